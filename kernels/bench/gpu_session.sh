#!/usr/bin/env bash
# One call on the lent GPU machine: install, the GPU test set, then the kernel benchmarks.
# Run from the repository root there, carrying `.whl` (wfdb/soundfile wheels) and `.anchors`
# (mamba_ssm 2.3.2.post1 sdist + /work/shared/tools/mamba_anchor.py), e.g. through the device
# tool: `bash kernels/bench/gpu_session.sh` with OUT set. Logs and JSON go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/ssmsignal-gpu}
mkdir -p "$OUT"
. kernels/bench/gpu_install.sh  # PYTHONUNBUFFERED, wheels, pip install -e .
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
git log -1 --format='commit %h %s' 2>/dev/null || true
python3 -m pytest -m cuda -q -p no:cacheprovider -o addopts="" -rfE 2>&1 | tee "$OUT/pytest_cuda.log" | tail -25
[ "${SKIP_BENCH:-0}" = 1 ] && exit 0
python3 -m ssmsignal.kernels.bench.bench_s4d_kernel --json "$OUT/bench_s4d.json" > "$OUT/bench_s4d.log" 2>&1
tail -20 "$OUT/bench_s4d.log"
python3 -m ssmsignal.kernels.bench.bench_selective_scan --json "$OUT/bench_scan.json" 2>&1 | tee "$OUT/bench_scan.log" | tail -12
