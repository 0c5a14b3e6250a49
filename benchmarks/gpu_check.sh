#!/usr/bin/env bash
# The one-shot GPU check of issue 23 (docs/speed.md "On a GPU"): under 8 minutes on one H100.
#
#   1. env        the machine (GPU, torch, CUDA, numba)                           -> $OUT/env.json
#   2. tests      tests/test_device_index.py on CUDA: chunk_partial vs the Numba kernels bit for bit,
#                 fold == update, record --index torch vs numba on a tiny real model -> $OUT/tests.log
#   3. demo       the tiny demo on CUDA: train (bf16 autocast), record with the index built while
#                 recording (pass 1 in torch on the GPU), pages read back           -> $OUT/demo.json
#   4. precision  forward fp32 / TF32 / bf16 autocast and train step fp32 / bf16, demo + GPT-2 shapes
#                                                                                  -> $OUT/precision.json
#   5. backends   record --index --dense none, pass 1 in torch (GPU) vs numba (CPU) vs the bare forward,
#                 demo and GPT-2-small shapes                                      -> $OUT/index_backend.json
#
# The GPU image has torch, numba, numpy, tokenizers, scipy, tqdm, but not zarr, numcodecs, donfig,
# google-crc32c or platformdirs: carry them as wheels. On the dev machine, once:
#     bash benchmarks/gpu_wheels.sh            # -> .whl/ (git-ignored through .git/info/exclude)
# then the device tool: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540).
# Every step has its own timeout and the script goes on after a failed step; step times go to
# $OUT/gpu_check.log. Smoke test of the script on a CPU (small sizes):
#     GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 OUT=/tmp/gpu_check bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-benchmarks/out/gpu}
DEV=${GPU_CHECK_DEVICE:-cuda}
QUICK=${GPU_CHECK_QUICK:-0}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
export PYTHONUNBUFFERED=1 QT_QPA_PLATFORM=offscreen OMP_WAIT_POLICY=PASSIVE
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
export NUMBA_CACHE_DIR=/tmp/numba-cache

step() {  # step NAME TIMEOUT_S COMMAND...: run, time, log the exit status, go on
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    echo "== $name (limit ${limit}s)" | tee -a "$LOG"
    timeout "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    echo "== $name rc=$rc $((SECONDS - t0)) s" | tee -a "$LOG"
}

if [ "$QUICK" = 1 ]; then
    TESTS_K="cpu and (one_chunk or folding)"; DEMO_TOKENS=16384; GPT2=""; GPT2_TOKENS=0; REPEATS=1
    PREC_MODELS=demo; PREC_CTX="demo:16"
else
    TESTS_K="cuda and not True and not refused"; DEMO_TOKENS=262144; GPT2=",gpt2"; GPT2_TOKENS=32768; REPEATS=3
    PREC_MODELS=demo,gpt2; PREC_CTX="demo:256,gpt2:8"
fi

step env 30 $PY benchmarks/gpu_check.py env --json "$OUT/env.json"
nvidia-smi -L >>"$LOG" 2>&1 || true
step tests 120 $PY -m pytest -q -p no:cacheprovider -o addopts="" tests/test_device_index.py -k "$TESTS_K"
cp "$LOG" "$OUT/tests.log"
step demo 120 $PY benchmarks/gpu_check.py demo --device "$DEV" --json "$OUT/demo.json"
step precision 45 $PY benchmarks/gpu_check.py precision --device "$DEV" --models "$PREC_MODELS" \
    --contexts "$PREC_CTX" --json "$OUT/precision.json"
step backends 150 $PY benchmarks/bench_index_backend.py --device "$DEV" --models "demo$GPT2" \
    --tokens "$DEMO_TOKENS" --gpt2-tokens "$GPT2_TOKENS" --gpt2-batch-size 16 --repeats "$REPEATS" \
    --json "$OUT/index_backend.json"
echo "done: $(ls "$OUT")" | tee -a "$LOG"
