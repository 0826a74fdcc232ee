#!/usr/bin/env bash
# One GPU round for the selective scan (issue 5): install; in parallel, build the mamba_ssm
# anchor (~150 s) and compile every candidate in VARIANTS into Triton's cache (one process
# each); the scan's GPU tests; then every candidate checked against float64 and timed side by
# side with mamba_ssm's CUDA kernel (kernels/bench/bench_selective_scan.py --variants).
# Run from the repository root on the GPU machine, carrying `.whl` and `.anchors`:
#   bash kernels/bench/gpu_scan.sh [variant,variant,...]
# Logs and JSON go to $OUT/scan/. Strict timeouts keep it under ~6 minutes.
set -uo pipefail
OUT=${OUT:-/tmp/ssmsignal-gpu}
LOG="$OUT/scan"
mkdir -p "$LOG"
VARIANTS=${1:-base,noseg,bwdcap168,fwdcap128,fwdnocap,ck8,bwdNO8,bwdW4,bwdcap128,precise,fwdNO8}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-deps --no-build-isolation -e . > "$LOG/pip.log" 2>&1 || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader | tee "$LOG/gpu.txt"
git log -1 --format='commit %h %s' 2>/dev/null | tee -a "$LOG/gpu.txt"
# the anchor's build is cached under /tmp: the benchmark below reuses it
(MAX_JOBS=8 timeout 240 python3 -c "import sys; sys.path.insert(0, '.anchors'); \
from mamba_anchor import load_mamba; load_mamba('.anchors')" > "$LOG/anchor_build.log" 2>&1) &
BUILD=$!
WARM=()
for v in ${VARIANTS//,/ }; do
    (timeout 120 python3 -m ssmsignal.kernels.bench.bench_selective_scan --warm "$v" \
        > "$LOG/warm_$v.log" 2>&1) &
    WARM+=($!)
done
wait "${WARM[@]}"; grep -h "warm" "$LOG"/warm_*.log
timeout 70 python3 -m pytest -m cuda -q -p no:cacheprovider -o addopts="" -rfE -x \
    tests/kernels/test_triton_selective_scan.py > "$LOG/pytest_cuda.log" 2>&1
echo "pytest rc=$?"; tail -3 "$LOG/pytest_cuda.log"
wait $BUILD; echo "anchor build rc=$?"; tail -1 "$LOG/anchor_build.log"
timeout 150 python3 -m ssmsignal.kernels.bench.bench_selective_scan --variants "$VARIANTS" \
    --json "$LOG/variants.json" > "$LOG/variants.log" 2>&1
echo "bench rc=$?"
tail -9 "$LOG/variants.log"
