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
