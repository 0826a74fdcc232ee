#!/usr/bin/env bash
# One GPU round for the selective scan (issue 5): install; in parallel, build the mamba_ssm
# anchor (~130-160 s) and compile every candidate in VARIANTS (kernels/bench/scan_variants.py)
# into Triton's cache (one process each), then the scan's GPU tests; then every candidate
# checked against float64 and timed side by side with mamba_ssm's CUDA kernel
# (kernels/bench/bench_selective_scan.py --variants).
# QUICK=1: timings of our candidates only (no anchor build, no tests, no checks; ~2-3 min);
# NO_TESTS=1: everything but the GPU tests; TEST_K / TEST_TIMEOUT: which GPU tests (pytest -k)
# and their time limit (default "not every_block_shape", 70 s); SHAPES_N: time the first N
# benchmark shapes only (default 3); WARM_TIMEOUT, BENCH_TIMEOUT: the
# compile and timing steps' limits (110 s, 170 s); NCU=NAME: after the tests, Nsight
# Compute profiles variant NAME's three kernels at the first shape (stall reasons, per-instruction
# samples: $LOG/ncu.tgz; NCU_TIMEOUT, default 80 s).
# Run from the repository root on the GPU machine, carrying `.whl` and `.anchors`:
#   bash kernels/bench/gpu_scan.sh [variant,variant,...]
# Output: at most five files in $OUT/scan/ (setup.log, pytest_cuda.log, variants.log,
# variants.json, ncu.tgz). Strict timeouts keep it under ~6 minutes (QUICK: ~3).
set -uo pipefail
OUT=${OUT:-/tmp/ssmsignal-gpu}
LOG="$OUT/scan"
mkdir -p "$LOG"
SETUP="$LOG/setup.log"
QUICK=${QUICK:-0}
VARIANTS=${1:-base,old}
BENCH="python3 -m ssmsignal.kernels.bench.bench_selective_scan"
QFLAG=""; WT=${WARM_TIMEOUT:-110}; BT=${BENCH_TIMEOUT:-170}
[ "$QUICK" = 1 ] && QFLAG="--no-mamba" && WT=${WARM_TIMEOUT:-70} && BT=${BENCH_TIMEOUT:-80}
. kernels/bench/gpu_install.sh  # PYTHONUNBUFFERED, wheels, pip install -e .
gpu_header "$SETUP"
BUILD=""
if [ "$QUICK" != 1 ]; then  # the anchor's build is cached under /tmp: the benchmark reuses it
    (MAX_JOBS=8 timeout 240 python3 -c "import sys; sys.path.insert(0, '.anchors'); \
from mamba_anchor import load_mamba; load_mamba('.anchors')" > /tmp/scan_anchor.log 2>&1) &
    BUILD=$!
fi
WARM=()
for v in ${VARIANTS//,/ }; do
    (timeout $WT $BENCH --warm "$v" $QFLAG > "/tmp/scan_warm_$v.log" 2>&1) &
    WARM+=($!)
done
wait "${WARM[@]}"
for v in ${VARIANTS//,/ }; do tail -3 "/tmp/scan_warm_$v.log"; done >> "$SETUP"
if [ "$QUICK" != 1 ]; then
    if [ "${NO_TESTS:-0}" != 1 ]; then  # NO_TESTS=1: no GPU tests
        timeout "${TEST_TIMEOUT:-70}" python3 -m pytest -m cuda -q -p no:cacheprovider \
            -o addopts="" -rfE -x -k "${TEST_K:-not every_block_shape}" \
            tests/kernels/test_triton_selective_scan.py \
            > "$LOG/pytest_cuda.log" 2>&1
        echo "pytest rc=$?" | tee -a "$SETUP"; tail -3 "$LOG/pytest_cuda.log"
    fi
    if [ -n "${NCU:-}" ]; then  # stall reasons of one variant's kernels (ncu on the machine)
        NCU_BIN=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
        P=/tmp/scan_ncu; mkdir -p $P
        timeout "${NCU_TIMEOUT:-80}" "$NCU_BIN" --clock-control none -f -o $P/prof \
            -k regex:'fwd_kernel|bwd_kernel' --launch-skip 3 --launch-count 3 \
            --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
            --section ComputeWorkloadAnalysis --section SourceCounters \
            $BENCH --profile "$NCU" > $P/run.log 2>&1
        echo "ncu rc=$?" | tee -a "$SETUP"
        timeout 15 "$NCU_BIN" --import $P/prof.ncu-rep --page details > $P/details.txt 2>&1
        timeout 20 "$NCU_BIN" --import $P/prof.ncu-rep --page source --csv --print-source sass \
            > $P/source_sass.csv 2>&1
        tar czf "$LOG/ncu.tgz" -C $P run.log details.txt source_sass.csv
        grep -E "Warp Cycles Per Issued|Issue Slots Busy|Stall|Executed Ipc" $P/details.txt \
            | head -30 >> "$SETUP"
    fi
    wait $BUILD; echo "anchor build rc=$?" | tee -a "$SETUP"; cat /tmp/scan_anchor.log >> "$SETUP"
fi
timeout $BT $BENCH --variants "$VARIANTS" $QFLAG --shapes "${SHAPES_N:-3}" \
    --json "$LOG/variants.json" > "$LOG/variants.log" 2>&1
echo "bench rc=$?"
tail -10 "$LOG/variants.log"
