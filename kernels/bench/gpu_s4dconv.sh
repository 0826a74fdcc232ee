#!/usr/bin/env bash
# GPU round for the fused S4D convolution (s4d_conv): install, the GPU tests of the op (and the
# layer tests), then the conv and S4D layer benchmark rows (fused vs old Triton path vs torch,
# block-shape sweep, layer kernel profile). Run from the repository root on the GPU machine,
# carrying `.whl`: `bash kernels/bench/gpu_s4dconv.sh` (at most 3 minutes + install). Output: $OUT/s4dscan/.
set -uo pipefail
OUT=${OUT:-/tmp/ssmsignal-gpu}
LOG="$OUT/s4dscan"
mkdir -p "$LOG"
. kernels/bench/gpu_install.sh  # PYTHONUNBUFFERED, wheels, pip install -e .
gpu_header "$LOG/device.txt"
timeout 90 python3 -m pytest -m cuda -q -p no:cacheprovider -o addopts="" -rfE \
    tests/kernels/test_triton_s4d_conv.py tests/layers 2>&1 | tee "$LOG/pytest_cuda.log" | tail -15
echo "pytest exit ${PIPESTATUS[0]}"
timeout 90 python3 -m ssmsignal.kernels.bench.bench_s4d_kernel --s4d-conv --profile-layer \
    --json "$LOG/bench_s4dconv.json" > "$LOG/bench_s4dconv.log" 2>&1
echo "bench exit $?"
tail -22 "$LOG/bench_s4dconv.log"
