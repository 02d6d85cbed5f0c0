"""`promptseg bench monuseg` plumbing on a tiny MoNuSeg-format set cut from the bundled nuclei
sample, with the tiny test model (real numbers come from docs/benchmarks.md runs)."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from promptseg.bench import monuseg as mb
from promptseg.bench.data import labelled_subset, load_seg_dir
from promptseg.bench.metrics import binary_scores, resize_nearest
from promptseg.model.segmenter import ModelConfig


def make_monuseg_like(folder, sample, n_val=4):
    """16 images of 128² (four crops of each 256² nuclei tile), masks {0,255}, captions.csv."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    k = 0
    for it in sample.items:
        img = np.asarray(it.image)
        img = np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img[..., :3]
        for y in (0, 128):
            for x in (0, 128):
                name = f"img{k:02d}.png"
                Image.fromarray(img[y:y + 128, x:x + 128].astype(np.uint8)).save(folder / "images" / name)
                Image.fromarray(((it.mask[y:y + 128, x:x + 128] > 0) * 255).astype(np.uint8)).save(folder / "masks" / name)
                rows.append((name, "train", f"caption {k}"))
                k += 1
    for i in range(len(rows) - n_val, len(rows)):
        rows[i] = (rows[i][0], "val", rows[i][2])
    with open(folder / "captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "split", "caption"])
        w.writerows(rows)
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread avoids oversubscription stalls."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, nuclei):
    return make_monuseg_like(tmp_path_factory.mktemp("monuseg"), nuclei)


@pytest.fixture
def trained_on(monkeypatch):
    """(method, labelled names, unlabelled names) of every training call the bench makes; the
    real trainer still runs."""
    seen = []
    real_train = mb.train_prompt_model

    def spy(method, model, labelled, unlabelled, *args, **kw):
        seen.append((method, [it.name for it in labelled], [it.name for it in unlabelled]))
        return real_train(method, model, labelled, unlabelled, *args, **kw)

    monkeypatch.setattr(mb, "train_prompt_model", spy)
    return seen


def tiny_cfg() -> ModelConfig:
    cfg = ModelConfig.tiny()
    cfg.train_backbone = False   # frozen random U-Net: embeddings are cached like LiteMedSAM's
    return cfg


def test_loader_and_subset_are_deterministic(tiny_data):
    rows = load_seg_dir(tiny_data)
    assert len(rows) == 16 and {r.split for r in rows} == {"train", "val"}
    assert rows[0].image.shape == (128, 128, 3) and set(np.unique(rows[0].mask)) <= {0, 1}
    names = [r.name for r in rows if r.split == "train"]
    a = labelled_subset(names, 0.25, seed=0)
    assert len(a) == 3 and a == labelled_subset(list(reversed(names)), 0.25, seed=0)
    assert labelled_subset(names, 0.5, seed=0) != labelled_subset(names, 0.5, seed=1)
    with pytest.raises(ValueError):
        labelled_subset(names, 0.0)


def test_scores_at_native_and_224():
    gt = np.zeros((512, 512), np.uint8)
    gt[100:200, 100:200] = 1
    s = binary_scores(gt, gt)
    assert s == {"dice": 1.0, "miou": 1.0, "dice_224": 1.0, "miou_224": 1.0}
    pred = np.zeros_like(gt)
    pred[100:200, 150:250] = 1
    s = binary_scores(pred, gt)
    assert s["dice"] == pytest.approx(0.5) and s["miou"] == pytest.approx(1 / 3)
    assert abs(s["dice_224"] - 0.5) < 0.02 and resize_nearest(gt).shape == (224, 224)


def test_bench_monuseg_plumbing(tiny_data, tmp_path, trained_on):
    seen = trained_on
    methods = ["supervised", "supervised_100", "unet", "promptseg"]
    cfg = mb.MonusegConfig(data=str(tiny_data), out=str(tmp_path / "out"), labels=0.25, methods=methods, steps=4,
                           unet_steps=2, unet_batch=2, unet_width=4, seeds=[0, 1], cache=str(tmp_path / "cache"))
    res = mb.run_monuseg(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["results"] == json.loads(json.dumps(res["results"]))
    assert len(on_disk["results"]) == len(methods) * 2
    for r in on_disk["results"]:
        assert {"method", "dice", "miou", "dice_224", "miou_224", "seconds", "seed"} <= set(r)
        assert all(0.0 <= r[k] <= 1.0 for k in ("dice", "miou", "dice_224", "miou_224"))
        assert len(r["per_image"]) == 4   # every eval image is scored, not only the last one
    c = on_disk["config"]
    assert c["labelled_images"] == labelled_subset([f"img{k:02d}" for k in range(12)], 0.25, 0)
    evals = set(c["eval_images"])
    assert evals == {f"img{k:02d}" for k in range(12, 16)}
    assert not evals & (set(c["labelled_images"]) | set(c["unlabelled_images"]))
    assert c["captions"]["img00"] == "caption 0" and c["prompt"] == "nucleus"
    for method, lab, unl in seen:   # the eval split never reaches a trainer
        assert not evals & (set(lab) | set(unl))
        assert len(lab) == (12 if method == "supervised_100" else 3)
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| supervised | 2 |" in md and "±" in md and "Δ Dice" in md
    assert (tmp_path / "out" / "monuseg_dice.png").stat().st_size > 1000


def test_cli_parses_bench_monuseg():
    from promptseg.cli import build_parser

    a = build_parser().parse_args(["bench", "monuseg", "--data", "D", "--labels", "0.5", "--eval-split", "test",
                                   "--quick", "--methods", "supervised,unet", "--seeds", "0,1"])
    assert a.fn.__name__ == "cmd_bench_monuseg" and a.quick and a.eval_split == "test"
    cfg = mb.MonusegConfig.quick_defaults("D", seeds=mb.seeds_arg(a.seeds), methods=None, steps=None)
    assert cfg.seeds == [0, 1] and cfg.steps == 200 and "promptseg" in cfg.methods


def test_prepare_keeps_prompt_embeddings_beside_the_image_cache(tiny_data, tmp_path, monkeypatch):
    """A GPU machine without the MiniLM weights runs the bench from the carried cache folder."""
    from promptseg.model.text import TextEncoder

    rows = load_seg_dir(tiny_data)[:2]
    quiet = []
    first = mb.prepare(rows, tiny_cfg(), tmp_path / "cache", "cpu", log=quiet.append)
    files = list((tmp_path / "cache").glob("prompts-*.safetensors"))
    assert len(files) == 1

    def no_encoder(self):
        raise OSError("no text encoder weights on this machine")

    monkeypatch.setattr(TextEncoder, "_load", no_encoder)
    second = mb.prepare(rows, tiny_cfg(), tmp_path / "cache", "cpu", log=quiet.append)
    assert np.array_equal(second.prompts.embs[0].pooled, first.prompts.embs[0].pooled)
    files[0].write_bytes(b"not a safetensors file")   # damaged: ignored, and then the encoder is needed
    with pytest.raises(RuntimeError, match="not in the embedding cache"):
        mb.prepare(rows, tiny_cfg(), tmp_path / "cache", "cpu", log=quiet.append)
    assert any("ignoring the prompt cache" in line for line in quiet)


def test_crop_and_batch_reach_the_trainer():
    from promptseg.bench.methods import crop_overrides
    from promptseg.training.ssl_config import method_config
    from promptseg.model.segmenter import PromptSegModel

    model = PromptSegModel(tiny_cfg())
    stride, tile = model.backbone.stride, model.tile
    assert crop_overrides(model, tile, 8) == {"crop": tile // stride, "batch_tiles": 8}
    assert crop_overrides(model, None, None) == {}
    for bad in (tile + stride, stride + 1, 0):
        with pytest.raises(ValueError, match="--crop"):
            crop_overrides(model, bad, None)
    with pytest.raises(ValueError, match="--batch"):
        crop_overrides(model, None, 0)
    cfg = method_config("promptseg", 10, crop=16, batch_tiles=8)
    assert cfg.supervised.crop == 16 and cfg.supervised.batch_tiles == 8 and cfg.unlabelled_tiles == 8
    from promptseg.cli import build_parser

    a = build_parser().parse_args(["bench", "monuseg", "--data", "D", "--crop", "256", "--batch", "8"])
    assert (a.crop, a.batch) == (256, 8)


def _fake_run(folder, labels, rows, **config):
    from promptseg.bench.report import write_results

    res = [{"method": m, "seed": s, "dice": d, "miou": d - 0.1, "dice_224": d, "miou_224": d - 0.1, "seconds": 1.0}
           for m, s, d in rows]
    write_results(folder, res, {"labels": labels, "eval_split": "val", "steps": 10, "crop": 256, "batch": 8,
                                "subset_seed": 0, **config})
    return folder


def test_bench_merge_joins_seeds_and_refuses_unlike_runs(tmp_path, capsys):
    from promptseg.bench.report import merge_runs
    from promptseg.cli import main

    a = _fake_run(tmp_path / "a", 0.25, [("promptseg", 0, 0.80), ("supervised", 0, 0.70)])
    b = _fake_run(tmp_path / "b", 0.25, [("supervised", 1, 0.74), ("promptseg", 1, 0.84)])
    assert main(["bench", "merge", str(a), str(b), "--out", str(tmp_path / "m")]) == 0
    md = (tmp_path / "m" / "results.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| supervised") or ln.startswith("| promptseg")]
    assert lines[0].startswith("| supervised | 2 | 72.00 ± 2.83")           # the baseline comes first
    assert lines[1].startswith("| promptseg | 2 | 82.00 ± 2.83") and "+10.00" in lines[1]
    assert len(json.loads((tmp_path / "m" / "results.json").read_text())["results"]) == 4
    c = _fake_run(tmp_path / "c", 0.5, [("promptseg", 2, 0.9)])
    with pytest.raises(ValueError, match="labels"):
        merge_runs([a, c])
    stained = _fake_run(tmp_path / "s", 0.25, [("promptseg", 2, 0.9)], stain_views=3)
    with pytest.raises(ValueError, match="stain_views"):   # a different method under the same name
        merge_runs([a, stained])
    assert len(merge_runs([a, _fake_run(tmp_path / "z", 0.25, [("promptseg", 3, 0.9)], stain_views=0)])["results"]) == 3
    with pytest.raises(ValueError, match="repeats"):
        merge_runs([a, a])
    with pytest.raises(FileNotFoundError, match="results.json"):
        merge_runs([tmp_path / "nothing"])


def test_dihedral_views_turn_image_and_mask_together(tiny_data):
    from promptseg.bench.data import dihedral_views

    row = load_seg_dir(tiny_data)[0]
    views = dihedral_views(row, 8)
    assert [v.name for v in views][:3] == [row.name, f"{row.name}@r90", f"{row.name}@r180"]
    assert np.array_equal(views[0].image, row.image) and len({v.name for v in views}) == 8
    for v in views:   # every view keeps the image-mask correspondence: same pixels under the mask
        assert v.image.shape == row.image.shape and v.mask.sum() == row.mask.sum()
        assert np.isclose(v.image[v.mask == 1].mean(), row.image[row.mask == 1].mean())
    assert np.array_equal(views[1].mask, np.rot90(row.mask)) and np.array_equal(views[4].image, row.image[:, ::-1])
    with pytest.raises(ValueError, match="between 1 and 8"):
        dihedral_views(row, 9)


def test_views_multiply_training_images_but_never_eval_images(tiny_data, tmp_path, trained_on):
    seen = trained_on
    cfg = mb.MonusegConfig(data=str(tiny_data), out=str(tmp_path / "out"), labels=0.25, methods=["promptseg"],
                           steps=2, seeds=[0], views=2, cache=str(tmp_path / "cache"))
    res = mb.run_monuseg(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
    (_, lab, unl), = seen
    assert len(lab) == 6 and sum("@r90" in n for n in lab) == 3 and len(unl) == 18
    assert {r["image"] for r in res["results"][0]["per_image"]} == {f"img{k:02d}" for k in range(12, 16)}
    assert res["config"]["views"] == 2


def test_finetune_methods_train_the_encoder_and_score_with_it(tiny_data, tmp_path, monkeypatch):
    """`supervised_ft(_100)`: the encoder is trained (the frozen reference is not touched),
    evaluation re-embeds with the trained encoder, and no training image is put in the cache."""
    import torch

    from promptseg.bench import finetune

    trained = []
    real = finetune.train_finetune

    def spy(model, rows, *args, **kw):
        before = [p.detach().clone() for p in model.backbone.parameters()]
        out = real(model, rows, *args, **kw)
        moved = any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))
        trained.append((len(rows), moved, model))
        return out

    monkeypatch.setattr(mb, "train_finetune", spy)
    embedded = []
    real_embed = mb.embed_image
    monkeypatch.setattr(mb, "embed_image", lambda model, image, *a, **kw: embedded.append(
        [p.detach().clone() for p in model.backbone.parameters()]) or real_embed(model, image, *a, **kw))
    cfg = mb.MonusegConfig(data=str(tiny_data), out=str(tmp_path / "out"), labels=0.25,
                           methods=["supervised_ft", "supervised_ft_100"], steps=3, seeds=[0], ft_batch=2,
                           cache=str(tmp_path / "cache"))
    res = mb.run_monuseg(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
    assert [(n, moved) for n, moved, _ in trained] == [(3, True), (12, True)]
    assert [r["labelled"] for r in res["results"]] == [3, 12]
    for _, _, model in trained:   # the 4 val images are embedded with each tuned encoder
        assert sum(all(torch.equal(a, b) for a, b in zip(e, model.backbone.parameters())) for e in embedded) == 4
    assert res["config"]["finetune"]["batch_tiles"] == 2
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 4   # only the eval images were cached
    with pytest.raises(ValueError, match="effort bench"):
        from promptseg.bench.effort import EffortConfig, run_effort
        run_effort(EffortConfig(data=str(tiny_data), method="supervised_ft"), model_cfg=tiny_cfg())


def test_two_stage_methods_tune_the_encoder_once_then_train_on_its_embeddings(tiny_data, tmp_path, trained_on,
                                                                              monkeypatch):
    """`ft+supervised`, `ft+promptseg`: one encoder fine-tuning per seed, shared; then the inner
    method on embeddings of that tuned encoder (not the reference cache's), with the unlabelled
    pool for the SSL one."""
    from promptseg.bench import finetune

    tunings = []
    real = finetune.train_finetune
    monkeypatch.setattr(mb, "train_finetune", lambda m, rows, *a, **kw: tunings.append(len(rows)) or real(m, rows, *a, **kw))
    cfg = mb.MonusegConfig(data=str(tiny_data), out=str(tmp_path / "out"), labels=0.25,
                           methods=["supervised_ft", "ft+supervised", "ft+promptseg"], steps=2, seeds=[0], ft_batch=1,
                           views=2, cache=str(tmp_path / "cache"))
    res = mb.run_monuseg(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
    assert tunings == [3]
    assert [(m, len(lab), len(unl)) for m, lab, unl in trained_on] == [("supervised", 6, 0), ("promptseg", 6, 18)]
    assert [r["method"] for r in res["results"]] == ["supervised_ft", "ft+supervised", "ft+promptseg"]
    assert [r["steps"] for r in res["results"]] == [2, 4, 4]
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 4   # tuned embeddings never enter the cache


def test_ft_from_stage_trains_only_the_later_tinyvit_stages(tiny_data, tmp_path):
    """`--ft-from-stage 3` (the CPU-sized diagnostic): TinyViT's stages 0-2 keep their pretrained
    weights and batch-norm statistics; stage 3, the neck and the decoder train."""
    import torch

    from promptseg.bench.finetune import FinetuneConfig, train_finetune

    rows = load_seg_dir(tiny_data)[:1]
    prep = mb.prepare([], ModelConfig(), tmp_path / "cache", "cpu", log=lambda s: None)
    model = mb.PromptSegModel(ModelConfig())
    vit = model.backbone.encoder
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_finetune(model, rows, prep.prompts, FinetuneConfig(steps=2, batch_tiles=1, from_stage=3, views=1))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    frozen = ("backbone.encoder.patch_embed.", "backbone.encoder.layers.0.", "backbone.encoder.layers.1.",
              "backbone.encoder.layers.2.")
    assert not [k for k in changed if k.startswith(frozen)]
    assert any(k.startswith("backbone.encoder.layers.3.") for k in changed)
    assert any(k.startswith("backbone.encoder.neck.") for k in changed)
    assert any(k.startswith("decoder.") for k in changed)
    assert not vit.training   # eval() at the end
    with pytest.raises(ValueError, match="litemedsam"):
        train_finetune(mb.PromptSegModel(tiny_cfg()), rows, prep.prompts, FinetuneConfig(steps=1, from_stage=3))


def test_label_jitter_reaches_the_trainer_and_the_results(tiny_data, tmp_path, monkeypatch):
    """`--label-jitter 0` reproduces the baseline before the jitter; the value used is recorded."""
    import promptseg.bench.methods as methods
    from promptseg.cli import build_parser

    assert build_parser().parse_args(["bench", "monuseg", "--data", "D"]).label_jitter is None
    a = build_parser().parse_args(["bench", "effort", "--data", "D", "--label-jitter", "0"])
    assert a.label_jitter == 0.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "monuseg", "--data", "D", "--label-jitter", "1.5"])
    used, real = [], methods.train_ssl
    monkeypatch.setattr(methods, "train_ssl", lambda m, lab, unl, p, cfg, **kw: used.append(cfg.label_jitter)
                        or real(m, lab, unl, p, cfg, **kw))
    for jitter in (None, 0.0):
        kw = {} if jitter is None else {"label_jitter": jitter}
        out = tmp_path / f"out{jitter}"
        cfg = mb.MonusegConfig(data=str(tiny_data), out=str(out), methods=["supervised"], steps=2, seeds=[0],
                               cache=str(tmp_path / "cache"), **kw)
        mb.run_monuseg(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
        assert json.loads((out / "results.json").read_text())["config"]["label_jitter"] == used[-1]
    assert used == [0.2, 0.0]
    with pytest.raises(ValueError, match="--label-jitter"):
        methods.train_prompt_model("supervised", None, [], [], None, 2, 0, label_jitter=1.5)


def test_stain_views_reach_only_the_methods_that_may_see_the_unlabelled_images(tiny_data, tmp_path, trained_on):
    """`--stain-views 2`: each labelled image is recoloured after two unlabelled images and
    embedded; the SSL methods and `supervised+stain` train on those views, `supervised` never."""
    from promptseg.cli import build_parser

    assert build_parser().parse_args(["bench", "monuseg", "--data", "D", "--stain-views", "2"]).stain_views == 2
    cfg = mb.MonusegConfig(data=str(tiny_data), out=str(tmp_path / "out"), labels=0.25, steps=2, seeds=[0],
                           methods=["supervised", "supervised+stain", "promptseg"], stain_views=2,
                           cache=str(tmp_path / "cache"))
    res = mb.run_monuseg(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
    c = res["config"]
    donors = c["stain_donors"]
    assert sorted(donors) == c["labelled_images"] and all(len(d) == 2 for d in donors.values())
    assert {d for ds in donors.values() for d in ds} <= set(c["unlabelled_images"])   # never an eval image
    by_method = {m: lab for m, lab, _ in trained_on}
    assert by_method["supervised"] == c["labelled_images"]
    for m in ("supervised+stain", "promptseg"):
        stained = [n for n in by_method[m] if "@stain-" in n]
        assert len(stained) == 6 and len(by_method[m]) == 9
    assert [r["method"] for r in res["results"]] == ["supervised", "supervised+stain", "promptseg"]
    with pytest.raises(ValueError, match="frozen-encoder"):
        mb.run_monuseg(mb.MonusegConfig(data=str(tiny_data), out=str(tmp_path / "o2"), methods=["ft+promptseg"],
                                        stain_views=1), model_cfg=tiny_cfg(), log=lambda s: None)


def test_bench_merge_joins_cross_validation_folds_into_the_cv_table(tmp_path):
    """A cross-validation split by fold over sessions: merged into one table per fold, with the
    margin of promptseg over the stronger pixel baseline fold by fold."""
    from promptseg.bench.report import merge_runs, write_results
    from promptseg.cli import main

    def fold_run(folder, fold, rows):
        res = [{"method": m, "seed": 0, "fold": fold, "dice": d, "miou": d, "dice_224": d, "miou_224": d,
                "seconds": 1.0} for m, d in rows]
        write_results(folder, res, {"labels": 0.25, "eval_split": "val", "steps": 10, "crop": 256, "batch": 8,
                                    "subset_seed": 0, "folds": 5})
        return folder

    a = fold_run(tmp_path / "f0", 0, [("supervised", 0.70), ("unet", 0.72), ("litemedsam_ft", 0.74), ("promptseg", 0.77)])
    b = fold_run(tmp_path / "f1", 1, [("supervised", 0.60), ("unet", 0.66), ("litemedsam_ft", 0.62), ("promptseg", 0.67)])
    assert main(["bench", "merge", str(a), str(b), "--out", str(tmp_path / "m")]) == 0
    md = (tmp_path / "m" / "results.md").read_text()
    assert "5-fold cross-validation" in md and "folds 0,1" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| promptseg"))
    assert row.startswith("| promptseg | 2 | 72.00 ± 7.07 | 77.00, 67.00 | +7.00 ± 0.00")
    # fold 0: 77 - 74 = +3, fold 1: 67 - 66 = +1 -> +2.00 ± 1.41, above the +1.5 target
    assert "the stronger of unet and litemedsam_ft, fold by fold over 2 fold(s): +2.00 ± 1.41" in md
    assert "target ≥ +1.5: met" in md
    with pytest.raises(ValueError, match="repeats"):
        merge_runs([a, a])
    other = tmp_path / "k3"
    write_results(other, [{"method": "promptseg", "seed": 0, "fold": 2, "dice": 0.5}],
                  {"labels": 0.25, "eval_split": "val", "steps": 10, "crop": 256, "batch": 8, "subset_seed": 0,
                   "folds": 3})
    with pytest.raises(ValueError, match="folds"):        # another fold layout is another benchmark
        merge_runs([a, other])
