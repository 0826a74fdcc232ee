#!/usr/bin/env bash
# Nsight Compute on the forward kernel without gradients at the first benchmark shape, for
# each variant named (kernels/bench/scan_variants.py): speed of light, memory workload, warp
# states and per-instruction samples. Output: $OUT/ncu/<variant>.txt (details) and
# <variant>_sass.csv (source counters). Run from the repository root on the GPU machine,
# carrying `.whl`:  bash kernels/bench/gpu_ncu_fwd.sh base,g-h1-s2
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: bash kernels/bench/gpu_ncu_fwd.sh VARIANT[,VARIANT...]"; exit 2; }
# (--launch-skip 2: each profiling round launches fwd_kernel twice, without and with
# checkpoints, at the first shape, which has one time segment; a fallback launch without the
# shuffles would shift it: the variants' timings report fallbacks)
OUT=${OUT:-/tmp/ssmsignal-gpu}
LOG="$OUT/ncu"; mkdir -p "$LOG"
. kernels/bench/gpu_install.sh
NCU_BIN=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
for v in ${1//,/ }; do
    P=/tmp/ncu_$v; mkdir -p $P
    timeout "${NCU_TIMEOUT:-100}" "$NCU_BIN" --clock-control none -f -o $P/prof \
        -k regex:fwd_kernel --launch-skip 2 --launch-count 1 \
        --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
        --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
        --section MemoryWorkloadAnalysis_Tables --section SourceCounters \
        --metrics breakdown:l1tex__throughput.avg.pct_of_peak_sustained_elapsed,breakdown:lts__throughput.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__data_pipe_lsu_wavefronts_mem_lg.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum,smsp__sass_inst_executed_op_shared_ld.sum \
        python3 -m ssmsignal.kernels.bench.bench_selective_scan --profile "$v" > $P/run.log 2>&1
    echo "ncu $v rc=$?"
    timeout 20 "$NCU_BIN" --import $P/prof.ncu-rep --page details > "$LOG/$v.txt" 2>&1
    timeout 20 "$NCU_BIN" --import $P/prof.ncu-rep --page source --csv --print-source sass \
        > "$LOG/${v}_sass.csv" 2>&1
    grep -E "Duration|Issue Slots|l1tex__|lts__|lsu" "$LOG/$v.txt" | head -40
done
