#!/usr/bin/env bash
# CUDA checks and timings for a GPU machine, in one short run (a few minutes on an H100; each step has a time limit).
#
#   bash benchmarks/gpu_check.sh                    # writes ./gpu_out (or $OUT when set)
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SMALL=1 bash benchmarks/gpu_check.sh   # dry run of every step on a CPU, tiny sizes
#
# Steps, each logged to $OUT/<step>.log:
#   versions   torch, CUDA, cuDNN, the GPU, nvidia-smi                                  -> versions.txt
#   tests      RSKP_TEST_DEVICE=cuda pytest -q -x tests/engine/test_amp.py tests/engine/test_engine.py  -> pytest.xml
#              (the CUDA variants of test_amp run; the CPU variants always run)
#   speed      benchmarks/speed.py, 4 heads, 200 videos, 3 timed epochs, batched loop      -> speed_cuda.json
#   bench      rskp-bench --head facnet --epochs 5 --seeds 1 (quick recipe)                -> bench_cuda.json
# A failed or timed-out step does not stop the others; the script exits 1 if any failed (see $OUT/status.txt).
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_out}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
SMALL="${GPU_CHECK_SMALL:-0}"

if [ "$DEVICE" = cuda ] && ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "torch sees no CUDA device; on a CPU machine run: GPU_CHECK_DEVICE=cpu GPU_CHECK_SMALL=1 bash $0" >&2
    exit 2
fi
mkdir -p "$OUT"
: > "$OUT/status.txt"

if [ "$SMALL" = 1 ]; then  # every step, at sizes a CPU finishes in about a minute
    SPEED_ARGS=(--videos 6 --repeats 1 --feature-dim 32)
    BENCH_ARGS=(--epochs 1 --set data.num_train=12 --set data.num_test=6 --set data.feature_dim=16
                --set "head.options={embed_dim: 16}")
else
    SPEED_ARGS=(--videos 200 --repeats 3)
    BENCH_ARGS=(--epochs 5)
fi

failed=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, record the exit status
    local name="$1" limit="$2"
    shift 2
    echo "=== $name: $*" | tee "$OUT/$name.log"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && echo "=== $name: timed out after $limit s" | tee -a "$OUT/$name.log"
    echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$OUT/status.txt"
    [ "$rc" = 0 ] || failed=1
}

step versions 60 python - <<'EOF'
import platform, torch
lines = [f"python {platform.python_version()}", f"torch {torch.__version__}",
         f"CUDA (torch built with) {torch.version.cuda}", f"cuda available {torch.cuda.is_available()}"]
if torch.cuda.is_available():
    lines += [f"cuDNN {torch.backends.cudnn.version()}", f"GPU {torch.cuda.get_device_name(0)}",
              f"capability {torch.cuda.get_device_capability(0)}", f"bf16 supported {torch.cuda.is_bf16_supported()}",
              f"devices {torch.cuda.device_count()}"]
print("\n".join(lines))
EOF
cp "$OUT/versions.log" "$OUT/versions.txt"
command -v nvidia-smi > /dev/null && nvidia-smi >> "$OUT/versions.txt" 2>&1

step tests 150 env RSKP_TEST_DEVICE="$DEVICE" \
    python -m pytest -q -x -rs tests/engine/test_amp.py tests/engine/test_engine.py --junitxml "$OUT/pytest.xml"

step speed 180 python benchmarks/speed.py --heads facnet stpn bm wum --modes batched --device "$DEVICE" \
    "${SPEED_ARGS[@]}" --output "$OUT/speed_$DEVICE.json"

step bench 150 rskp-bench --head facnet --seeds 1 --device "$DEVICE" --no-progress "${BENCH_ARGS[@]}" \
    --output "$OUT/bench_$DEVICE.json"

echo "=== done; results in $OUT"
cat "$OUT/status.txt"
exit $failed
