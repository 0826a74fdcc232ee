#!/usr/bin/env bash
# One call on the lent GPU machine for the fused SaShiMi decode step (issue 6 / issue 5 item 4):
# install, the GPU tests of the fused step, then the generation benchmark (fused vs
# module-by-module with CUDA graphs vs naive, batch 1 and 64, default and 2-pair models).
# Run from the repository root there: `bash kernels/bench/gpu_decode.sh` (about 4 minutes).
# Logs and JSON go to $OUT/decode/.
set -uo pipefail
OUT=${OUT:-/tmp/ssmsignal-gpu}
D="$OUT/decode"
mkdir -p "$D"
. kernels/bench/gpu_install.sh  # PYTHONUNBUFFERED, wheels, pip install -e .
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader | tee "$D/device.txt"
git log -1 --format='commit %h %s' 2>/dev/null | tee -a "$D/device.txt" || true
date -u | tee -a "$D/device.txt"
timeout 150 python3 -m pytest -m cuda -v --tb=short -p no:cacheprovider -o addopts="" -rfE \
    tests/models/test_sashimi_fused.py 2>&1 | tee "$D/pytest_cuda.log" | tail -15
timeout 150 python3 -m ssmsignal.kernels.bench.bench_generation --device cuda --compare \
    --json "$D/bench_decode.json" 2>&1 | tee "$D/bench_decode.log" | tail -40
