"""`promptseg bench precision` on the CPU: the shipped model's float32 encoder checked against
itself (the reduced precisions need a bfloat16 CPU or CUDA; their numbers are in
docs/benchmarks.md, "Encoder precision")."""
import json
import subprocess
import sys


def test_precision_bench_scores_real_masks_and_shared_encoder_threads(tmp_path):
    p = subprocess.run([sys.executable, "-m", "promptseg.cli", "bench", "precision", "--device", "cpu",
                        "--precision", "float32", "--quick", "--runs", "1", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "encoder_precision_check.json").read_text())
    row = res["accuracy"]["nuclei_0"]
    assert row["dice_gt_float32"] > 85 and row["dice_gt_float32_again"] == row["dice_gt_float32"]
    assert row["mask_dice_between"] == 1.0
    shape = res["shapes"]["256_u16"]
    assert shape["tiles"] == 1 and shape["emb_max_abs_diff"] == 0.0 and shape["set_image_ms_p50_float32"] > 0
    assert res["threads_max_abs_diff"] == {"a": 0.0, "b": 0.0}
