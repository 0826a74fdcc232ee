#!/usr/bin/env bash
# One call on the lent GPU machine for the fused SaShiMi decode step (issue 6): install, the GPU
# tests of the fused step (both block arrangements, float64 reference), then the generation
# benchmark: a one-SM load-throughput probe; for the default depth (8 pairs, unet=False, S4 and
# S4D) the fused step (shipped, split over 8 SMs, bf16 dense maps, "mix") against the
# module-by-module step with CUDA graphs and the naive convolution rerun; the 2-pair models and
# the U-Net arrangement fused at batch 1; per-pass kernel times.
# Run from the repository root there: `bash kernels/bench/gpu_decode.sh` (about 5 minutes).
# Logs and JSON go to $OUT/decode/.
set -uo pipefail
OUT=${OUT:-/tmp/ssmsignal-gpu}
D="$OUT/decode"
mkdir -p "$D"
. kernels/bench/gpu_install.sh  # PYTHONUNBUFFERED, wheels, pip install -e .
gpu_header "$D/device.txt"
date -u | tee -a "$D/device.txt"
timeout 100 python3 -m pytest -m cuda -v --tb=short -p no:cacheprovider -o addopts="" -rfE \
    tests/models/test_sashimi_fused.py 2>&1 | tee "$D/pytest_cuda.log" | tail -12
timeout 210 python3 -m ssmsignal.kernels.bench.bench_generation --device cuda --compare \
    --json "$D/bench_decode.json" 2>&1 | tee "$D/bench_decode.log" | tail -45
date -u | tee -a "$D/device.txt"
