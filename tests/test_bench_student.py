"""The full-resolution student (`promptseg_student`) and its ensemble with the teacher
(`promptseg_ensemble`): pseudo targets, a student that learns from a real teacher's pseudo
labels alone on real MoNuSeg images, and the bench's same-run plumbing."""
import numpy as np
import pytest

from promptseg.bench import monuseg as mb
from promptseg.bench.data import by_split, load_seg_dir
from promptseg.bench.metrics import binary_scores
from promptseg.bench.student import StudentSettings, ensemble_prob, pseudo_target, train_student
from promptseg.bench.unet_baseline import UNetTrainConfig, predict_unet, predict_unet_prob, train_unet
from test_bench_monuseg import one_thread, tiny_cfg, tiny_data, trained_on  # noqa: F401  (fixtures)
from test_bench_pixel import needs_monuseg, MONUSEG


def test_pseudo_targets_threshold_at_one_half_and_drop_uncertain_pixels():
    prob = np.array([[0.05, 0.35, 0.5], [0.65, 0.9, 0.71]], np.float32)
    mask, weight = pseudo_target(prob, 0.7)
    assert mask.tolist() == [[0, 0, 1], [1, 1, 1]]
    assert weight.tolist() == [[1, 0, 0], [0, 1, 1]]
    assert pseudo_target(prob, 0.5)[1].all()
    with pytest.raises(ValueError, match="confidence"):
        pseudo_target(prob, 1.0)
    assert ensemble_prob(np.full((2, 2), 0.2), np.full((2, 2), 0.9)).tolist() == [[0.55, 0.55]] * 2
    with pytest.raises(ValueError, match="probabilities"):
        ensemble_prob(np.zeros((2, 2)), np.zeros((3, 2)))


@needs_monuseg
def test_a_student_learns_from_a_teachers_pseudo_labels_alone(one_thread):
    """Quality on real data: a small U-Net teacher trained on three labelled images labels three
    other images; a student that sees only those pseudo labels (none of the gold masks)
    segments two val images it never saw."""
    rows = load_seg_dir(MONUSEG)
    train, val = by_split(rows, "train"), by_split(rows, "val")[:2]
    labelled, unlabelled = train[:3], train[3:6]
    cfg = UNetTrainConfig(steps=150, width=8, crop=128, batch=4)
    teacher = train_unet([r.image for r in labelled], [r.mask for r in labelled], cfg)
    probs = {r.name: predict_unet_prob(teacher, r.image, tile=128) for r in unlabelled + val}
    student, stats = train_student([], unlabelled, probs.__getitem__, UNetTrainConfig(steps=150, width=8, crop=128,
                                                                                       batch=4, seed=1))
    assert stats["pseudo_images"] == 3 and 0.5 < stats["pseudo_kept_fraction"] < 1
    dice = [binary_scores(predict_unet(student, r.image, tile=128), r.mask)["dice"] for r in val]
    assert np.mean(dice) > 0.45, dice
    ens = [binary_scores((ensemble_prob(predict_unet_prob(student, r.image, tile=128), probs[r.name]) >= 0.5)
                         .astype(np.int32), r.mask)["dice"] for r in val]
    assert np.mean(ens) > 0.45, ens


def test_the_bench_trains_the_student_on_the_promptseg_teacher_of_the_same_run(tiny_data, tmp_path, trained_on):
    methods = ["promptseg", "unet", "promptseg_student", "promptseg_ensemble"]
    cfg = mb.MonusegConfig(data=str(tiny_data), out=str(tmp_path / "out"), labels=0.25, methods=methods, steps=3,
                           unet_steps=2, unet_batch=2, unet_width=4, unet_crop=64, seeds=[0],
                           cache=str(tmp_path / "cache"))
    res = mb.run_monuseg(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
    assert [m for m, _, _ in trained_on] == ["promptseg"]   # one teacher, shared by the student and ensemble
    by = {r["method"]: r for r in res["results"]}
    evals = set(res["config"]["eval_images"])
    for m in ("promptseg_student", "promptseg_ensemble"):
        assert by[m]["steps"] == by["unet"]["steps"] == 2   # the unet's step budget
        assert by[m]["pseudo_images"] == len(res["config"]["unlabelled_images"]) == 9
        assert {p["image"] for p in by[m]["per_image"]} == evals
        assert 0 <= by[m]["dice"] <= 1
    assert by["promptseg_student"]["train_seconds"] >= by["promptseg"]["train_seconds"]   # teacher's time counted
    with pytest.raises(ValueError, match="student method"):
        from promptseg.bench.student import StudentRuns

        StudentRuns(StudentSettings()).score("unet", UNetTrainConfig(), [], [], [], lambda n: None, "cpu",
                                             print, "")
