"""`promptseg bench latency` plumbing (tiny run; real numbers come from docs/benchmarks.md runs)."""
import json
import subprocess
import sys


def test_latency_bench_writes_percentiles(tmp_path):
    p = subprocess.run([sys.executable, "-m", "promptseg.cli", "bench", "latency", "--size", "200", "--runs", "3",
                        "--embed-runs", "1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "latency.json").read_text())
    for k in ("embed_ms_p50", "embed_ms_p95", "prompt_ms_p50", "prompt_ms_p95"):
        assert res[k] > 0
    assert res["prompt_ms_p50"] <= res["prompt_ms_p95"] and res["tiles"] == 1 and res["size"] == 200
    # the same-run baseline: the reference paths, timed beside the fast ones, same masks
    assert res["reference_embed_ms_p50"] > 0 and res["reference_prompt_ms_p50"] > 0
    assert res["embed_speedup_vs_reference"] == round(res["reference_embed_ms_p50"] / res["embed_ms_p50"], 2)
    assert res["mask_dice_vs_reference"] >= 0.99


def test_latency_bench_times_a_reduced_precision_encoder_against_float32_in_the_same_run(tmp_path):
    """--encoder-precision bfloat16 (a CPU with native bfloat16): the float32 fast path is timed
    in the same run, so the speed-up is a same-run ratio; elsewhere the option is refused."""
    from promptseg.model.backbones.reduced_precision import bfloat16_supported

    p = subprocess.run([sys.executable, "-m", "promptseg.cli", "bench", "latency", "--size", "200", "--runs", "2",
                        "--embed-runs", "2", "--no-reference", "--encoder-precision", "bfloat16",
                        "--decoder-precision", "bfloat16", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    if not bfloat16_supported():
        assert p.returncode != 0 and "no native bfloat16" in p.stderr
        return
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "latency.json").read_text())
    assert res["embed_dtype"] == res["decoder_dtype"] == "bfloat16" and "reference_embed_ms_p50" not in res
    assert abs(res["embed_speedup_vs_float32"] - res["float32_embed_ms_p50"] / res["embed_ms_p50"]) < 0.01
    assert abs(res["prompt_speedup_vs_float32"] - res["float32_prompt_ms_p50"] / res["prompt_ms_p50"]) < 0.02
    assert res["mask_dice_vs_float32"] > 0.9
