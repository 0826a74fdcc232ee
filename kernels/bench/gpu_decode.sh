#!/usr/bin/env bash
# One call on the lent GPU machine for the fused SaShiMi decode step (issue 6): install, the GPU
# tests of the shipped dataflow passes (default model at batch 1 vs float64, graphs == eager,
# batch-64 fallback), then the generation benchmark: for the default depth (8 pairs,
# unet=False, S4 and S4D) the shipped fused step (dataflow passes at batch 1) against the
# one-program passes, the module-by-module step with CUDA graphs and the naive convolution
# rerun, at batch 1 and 64; the 2-pair S4 model; per-pass kernel times.
# Run from the repository root there: `bash kernels/bench/gpu_decode.sh` (under 4 minutes).
# Logs and JSON go to $OUT/decode/. TESTS=all also runs tests/models/test_sashimi_fused.py;
# PROBE=1 adds the hand-off probe to the benchmark; CANDIDATES=1 times only the batch-1 rows of
# the S4 dataflow settings of GPU round 3 (bench_generation.CANDIDATES); NO_BENCH=1 skips the
# benchmark; SSMSIGNAL_DIAG=1 adds the diagnostic GPU tests (tier combinations, S4).
set -uo pipefail
OUT=${OUT:-/tmp/ssmsignal-gpu}
D="$OUT/decode"
mkdir -p "$D"
. kernels/bench/gpu_install.sh  # PYTHONUNBUFFERED, wheels, pip install -e .
gpu_header "$D/device.txt"
date -u | tee -a "$D/device.txt"
FILES=tests/models/test_sashimi_dataflow.py
[ "${TESTS:-}" = all ] && FILES="$FILES tests/models/test_sashimi_fused.py"
timeout "${TEST_TIMEOUT:-90}" python3 -m pytest -m cuda -v --tb=short -p no:cacheprovider \
    -o addopts="" -rfE $FILES 2>&1 | tee "$D/pytest_cuda.log" | tail -12
date -u | tee -a "$D/device.txt"
[ -n "${NO_BENCH:-}" ] || timeout "${BENCH_TIMEOUT:-120}" python3 -m \
    ssmsignal.kernels.bench.bench_generation --device cuda --compare ${PROBE:+--probe} \
    ${CANDIDATES:+--candidates} --json "$D/bench_decode.json" 2>&1 \
    | tee "$D/bench_decode.log" | tail -40
date -u | tee -a "$D/device.txt"
