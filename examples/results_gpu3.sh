#!/usr/bin/env bash
# docs/results.md "Classification (issue 3)", third campaign: FSDD with per-recording level
# normalisation, the repaired max_time schedule (fde8605), band-limit augmentation
# (augment "lowpass") and bidirectional blocks; one GPU call of <= 9 minutes per round.
#
#   ROUND=1  (model selection on a development split, and leave-one-speaker-out)
#     lane A: standard split with --dev (recordings 5-9 held out of training): causal S4D,
#             then the same + lowpass augmentation
#     lane B: standard split with --dev: bidirectional S4D + lowpass augmentation
#     lane C: S4D leave-one-speaker-out, six folds
#   ROUND=2  (round 1 chose the causal S4D + lowpass recipe "s4d_lp" on the dev split)
#     lane A: s4d_lp on all 2700 training files, seeds 1 and 2
#     lane B: s4d_lp with --dev, seed 1 (its dev score over two seeds), then all files, seed 3
#     lane C: S4D leave-one-speaker-out, seed 1 (six folds; the second seed of round 1's)
#     lane D: candidate recipe "s4d_lp7" (lowpass 0.7): with --dev, seed 0; all files, seed 1
#
# The lanes share the one GPU. The processes are bound by Python and kernel launches: in
# round 1 three lanes each ran S4D epochs in 3.0 s, as fast as one alone in campaign 1, but
# the three caching allocators reserved up to 80.6 GB. So round 2's four lanes run with
# expandable segments and each process capped at 24 % of the memory (a CPU measurement of
# the largest batch's forward + backward: about 8 GB in float32). Every fit has a
# training budget (the estimators' max_time), every step a hard `timeout`, the whole script a
# deadline (TOTAL_SECONDS). Needs .devdata/results/fsdd.npz (examples/prepare_results_data.py).
# Output, 4 files under $OUT/results/: summary.txt (device, commit, steps, tables),
# results.jsonl (one row per fit), logs.tar.gz (lane logs, GPU utilisation), proba.tar.gz
# (every fit's test/dev probabilities at every rate, for examples/loso_ensemble.py).
# SMOKE=1 runs every step on a tiny subset on the CPU (a crash check, not a result).
set -u
T0=$(date +%s)
OUT=${OUT:-results-out}
D="$OUT/results"
W=$(mktemp -d /tmp/results3.XXXXXX)  # logs and probabilities, packed into $D at the end
P="$W/proba"
mkdir -p "$D" "$P"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-3}  # the lanes share the CPUs
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
DEADLINE=$((T0 + ${TOTAL_SECONDS:-520}))
ROUND=${ROUND:-1}

if [ "${SMOKE:-0}" = 1 ]; then
  TINY=(--subset 40 --epochs 2 --d-model 8 --n-layers 1 --device cpu)
  LOSO_ALL=(--speakers george,theo)
  SCALE=0.02
else
  source kernels/bench/gpu_install.sh
  TINY=(); LOSO_ALL=()
  SCALE=1
  command -v nvidia-smi > /dev/null && { nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used \
    --format=csv -l 5 > "$W/gpu.csv" 2>&1 & SMI=$!; }
fi
S="$D/summary.txt"
STEPS="$W/steps.txt"
: > "$STEPS"
source examples/gpu_lanes.sh  # device_header, step
device_header "$S"
echo "ROUND=$ROUND SMOKE=${SMOKE:-0} $(date -u +%Y-%m-%dT%H:%MZ)" | tee -a "$S"

budget() { python3 -c "print(max(1.0, round($1 * $SCALE, 1)))"; }

F=(python3 examples/fsdd_digits.py --data .devdata/results/fsdd.npz --out "$D/results.jsonl"
   --proba-dir "$P" --normalize --epochs 300 --patience 1000 --dropout 0.15
   --weight-decay 0.05 --label-smoothing 0.1)
AUG='{"crop": 0.1, "speed": 0.1, "gain_db": 6, "snr_db": [20, 40]}'
AUG_LP='{"crop": 0.1, "speed": 0.1, "lowpass": 0.5, "gain_db": 6, "snr_db": [20, 40]}'
AUG_LOSO='{"crop": 0.1, "speed": 0.15, "gain_db": 6, "snr_db": [20, 40]}'

round1_a() {
  step 235 dev_s4d "${F[@]}" --dev --tag s4d --augment "$AUG" \
    --max-time "$(budget 195)" "${TINY[@]}"
  step 235 dev_s4d_lp "${F[@]}" --dev --tag s4d_lp --augment "$AUG_LP" \
    --max-time "$(budget 195)" "${TINY[@]}"
}
round1_b() {
  step 480 dev_s4d_bi_lp "${F[@]}" --dev --tag s4d_bi_lp --bidirectional --augment "$AUG_LP" \
    --max-time "$(budget 410)" "${TINY[@]}"
}
round1_c() {
  step 490 loso_s4d "${F[@]}" --loso --skip-standard --tag s4d --augment "$AUG_LOSO" \
    --max-time "$(budget 62)" "${LOSO_ALL[@]}" "${TINY[@]}"
}

AUG_LP7='{"crop": 0.1, "speed": 0.1, "lowpass": 0.7, "gain_db": 6, "snr_db": [20, 40]}'
CAP=(--cuda-memory-fraction 0.24)
round2_a() {
  for seed in 1 2; do
    step 235 full_s4d_lp_$seed "${F[@]}" --tag s4d_lp --augment "$AUG_LP" --seed $seed \
      "${CAP[@]}" --max-time "$(budget 195)" "${TINY[@]}"
  done
}
round2_b() {
  step 235 dev_s4d_lp_1 "${F[@]}" --dev --tag s4d_lp --augment "$AUG_LP" --seed 1 \
    "${CAP[@]}" --max-time "$(budget 195)" "${TINY[@]}"
  step 235 full_s4d_lp_3 "${F[@]}" --tag s4d_lp --augment "$AUG_LP" --seed 3 \
    "${CAP[@]}" --max-time "$(budget 195)" "${TINY[@]}"
}
round2_c() {
  step 490 loso_s4d_1 "${F[@]}" --loso --skip-standard --tag s4d --augment "$AUG_LOSO" \
    --seed 1 "${CAP[@]}" --max-time "$(budget 62)" "${LOSO_ALL[@]}" "${TINY[@]}"
}
round2_d() {
  step 235 dev_s4d_lp7_0 "${F[@]}" --dev --tag s4d_lp7 --augment "$AUG_LP7" --seed 0 \
    "${CAP[@]}" --max-time "$(budget 195)" "${TINY[@]}"
  step 235 full_s4d_lp7_1 "${F[@]}" --tag s4d_lp7 --augment "$AUG_LP7" --seed 1 \
    "${CAP[@]}" --max-time "$(budget 195)" "${TINY[@]}"
}

LOG="$W/lane_a.log" "round${ROUND}_a" & A=$!
LOG="$W/lane_b.log" "round${ROUND}_b" & B=$!
LOG="$W/lane_c.log" "round${ROUND}_c" & C=$!
E=
[ "$ROUND" = 2 ] && { LOG="$W/lane_d.log" round2_d & E=$!; }
wait "$A" "$B" "$C" $E
[ -n "${SMI:-}" ] && kill "$SMI" 2> /dev/null

{ echo "== steps"; cat "$STEPS"; echo "== fits ($(( $(date +%s) - T0 )) s in all)"; } | tee -a "$S"
python3 - "$D/results.jsonl" <<'EOF' | tee -a "$S"
import json, sys
try:
    rows = [json.loads(line) for line in open(sys.argv[1])]
except FileNotFoundError:
    rows = []
for r in rows:
    accs = " ".join(f"{k} {v:.3f}" for k, v in r.items()
                    if k.startswith(("acc_", "dev_")) and isinstance(v, float))
    print(f"{r['setting']:<15} {r.get('tag')} s{r['seed']} ep {r['epochs_run']:>3} "
          f"({r['epoch_seconds']} s/ep, fit {r['fit_seconds']} s) val {r['val_best']:.3f} | "
          f"{accs}")
EOF
echo "== ensembles (examples/loso_ensemble.py)" | tee -a "$S"
python3 examples/loso_ensemble.py "$P" 2>&1 | tee -a "$S"
tar -czf "$D/proba.tar.gz" -C "$W" proba
tar -czf "$D/logs.tar.gz" -C "$W" --exclude proba .
rm -rf "$W"
