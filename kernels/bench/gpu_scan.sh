#!/usr/bin/env bash
# One GPU round for the selective scan (issue 5): install, build the mamba_ssm anchor (in the
# background, ~150 s, while the GPU tests run), the scan's GPU tests, then every candidate in
# VARIANTS checked against float64 and timed side by side with mamba_ssm's CUDA kernel.
# Run from the repository root on the GPU machine, carrying `.whl` and `.anchors`:
#   bash kernels/bench/gpu_scan.sh [variant,variant,...]
# Logs and JSON go to $OUT/scan/. Strict timeouts keep it under ~6 minutes.
set -uo pipefail
OUT=${OUT:-/tmp/ssmsignal-gpu}
LOG="$OUT/scan"
mkdir -p "$LOG"
VARIANTS=${1:-base,ck8,bwdW4,bwdNO8,fwdNO8}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-deps --no-build-isolation -e . > "$LOG/pip.log" 2>&1 || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader | tee "$LOG/gpu.txt"
git log -1 --format='commit %h %s' 2>/dev/null | tee -a "$LOG/gpu.txt"
# the anchor's build is cached under /tmp: the benchmark below reuses it
(timeout 240 python3 -c "import sys; sys.path.insert(0, '.anchors'); \
from mamba_anchor import load_mamba; load_mamba('.anchors')" > "$LOG/anchor_build.log" 2>&1) &
BUILD=$!
timeout 140 python3 -m pytest -m cuda -q -p no:cacheprovider -o addopts="" -rfE -x \
    tests/kernels/test_triton_selective_scan.py > "$LOG/pytest_cuda.log" 2>&1
echo "pytest rc=$?"; tail -4 "$LOG/pytest_cuda.log"
wait $BUILD; echo "anchor build rc=$?"; tail -2 "$LOG/anchor_build.log"
timeout 190 python3 -m ssmsignal.kernels.bench.bench_selective_scan --variants "$VARIANTS" \
    --json "$LOG/variants.json" > "$LOG/variants.log" 2>&1
echo "bench rc=$?"
tail -12 "$LOG/variants.log"
