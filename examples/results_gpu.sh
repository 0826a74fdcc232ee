#!/usr/bin/env bash
# The docs/results.md "Classification (issue 3)" runs, in priority order, on one GPU machine.
# Needs .devdata/results/{fsdd,mitbih}.npz (examples/prepare_results_data.py). Each step has
# its own time limit so that a slow one cannot starve the rest; results append to $OUT.
set -u
OUT=${OUT:-results-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
date -u +"%Y-%m-%dT%H:%MZ"
step() {  # step SECONDS NAME command...
  local limit=$1 name=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? after $(( $(date +%s) - t0 )) s"
  grep '^{' "$OUT/$name.log" || tail -n 5 "$OUT/$name.log"
}
step "${FSDD_S4_SECONDS:-150}" fsdd_s4d python3 examples/fsdd_digits.py --layer s4d --verbose 1 \
  --out "$OUT/results.jsonl"
step "${MIT_SECONDS:-100}" mitbih python3 examples/mitbih_interpatient.py --verbose 1 \
  --out "$OUT/results.jsonl"
step "${FSDD_MAMBA_SECONDS:-120}" fsdd_mamba python3 examples/fsdd_digits.py --layer mamba \
  --verbose 1 --out "$OUT/results.jsonl"
step "${LOSO_SECONDS:-120}" fsdd_loso python3 examples/fsdd_digits.py --layer s4d --loso \
  --skip-standard --epochs 12 --patience 4 --budget-seconds 100 --verbose 1 \
  --out "$OUT/results.jsonl"
