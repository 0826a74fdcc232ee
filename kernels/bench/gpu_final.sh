#!/usr/bin/env bash
# Final verification call on the GPU machine: the whole GPU test set (`pytest -m cuda`) on the
# checked-out code, then the shipped selective_scan defaults ("base") checked against float64
# and timed beside mamba_ssm's CUDA kernel in the same process. The mamba_ssm anchor builds on
# the CPU cores while the tests run. Carry `.whl` and `.anchors`. Output: $OUT/final/.
set -uo pipefail
OUT=${OUT:-/tmp/ssmsignal-gpu}
LOG="$OUT/final"
mkdir -p "$LOG"
. kernels/bench/gpu_install.sh  # PYTHONUNBUFFERED, wheels, pip install -e .
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u; } | tee "$LOG/setup.log"
(MAX_JOBS=6 timeout 300 python3 -c "import sys; sys.path.insert(0, '.anchors'); \
from mamba_anchor import load_mamba; load_mamba('.anchors')" > /tmp/final_anchor.log 2>&1) &
BUILD=$!
timeout "${TEST_SECONDS:-380}" python3 -m pytest -m cuda -q -p no:cacheprovider -o addopts="" \
    -rfE --timeout 150 -k "not every_block_shape" > "$LOG/pytest_cuda.log" 2>&1
echo "pytest rc=$?" | tee -a "$LOG/setup.log"
tail -15 "$LOG/pytest_cuda.log"
wait $BUILD; echo "anchor build rc=$?" | tee -a "$LOG/setup.log"
timeout "${BENCH_SECONDS:-110}" python3 -m ssmsignal.kernels.bench.bench_selective_scan \
    --variants base --json "$LOG/bench_scan.json" > "$LOG/bench_scan.log" 2>&1
echo "bench rc=$?"
tail -8 "$LOG/bench_scan.log"
