#!/usr/bin/env bash
# docs/results.md "Classification (issue 3)", second campaign: training-time augmentation and
# RR-interval features, on one GPU machine in <= 9.5 minutes per round (ROUND=1 or 2).
#
# Two lanes run at the same time on the one GPU (measured in round 1: 1.4x the throughput of
# running the steps one after the other):
#   ROUND=1  lane A: FSDD standard split, S4D + augmentation -> S4D leave-one-speaker-out
#            lane B: FSDD standard split, Mamba + augmentation (+ rate augmentation)
#                    -> MIT-BIH DS1 -> DS2 with RR-interval channels -> an S4D variant
#   ROUND=2  lane A: Mamba leave-one-speaker-out, folds 1-3 -> two MIT-BIH variants
#            lane B: Mamba leave-one-speaker-out, folds 4-6 -> Mamba standard split, seed 1,
#                    tested at more rates (inside and outside the rate-augmentation range)
# Every fit has a training budget (the estimators' max_time), every step a hard `timeout`, and
# the whole script a deadline (TOTAL_SECONDS), so a slow step cannot starve the others.
# Needs .devdata/results/{fsdd,mitbih}.npz from examples/prepare_results_data.py (the MIT-BIH
# file must hold r_peak). Output (4 files, the device tool returns only a few): $OUT/results/
# results.jsonl (one JSON row per fit), summary.txt (device, steps, table), lane_{a,b}.log.
# SMOKE=1 runs every step on a tiny subset on the CPU (a crash check, not a result).
set -u
T0=$(date +%s)
OUT=${OUT:-results-out}
D="$OUT/results"
mkdir -p "$D"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}  # two processes share the CPUs
DEADLINE=$((T0 + ${TOTAL_SECONDS:-555}))
SCALE=${SCALE:-1}  # multiplies every training budget (SMOKE: tiny anyway)

if [ "${SMOKE:-0}" = 1 ]; then
  TINY_F=(--subset 60 --epochs 1 --d-model 8 --n-layers 1 --device cpu)
  TINY_M=(--subset 300 --epochs 1 --d-model 8 --n-layers 1 --device cpu)
  LOSO_SPEAKERS=(--speakers george,jackson)
  FOLDS_1=(--speakers george); FOLDS_2=(--speakers theo)
else
  python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/install.log 2>&1 \
    || { echo "install failed"; tail -5 /tmp/install.log; }
  TINY_F=(); TINY_M=(); LOSO_SPEAKERS=()
  FOLDS_1=(--speakers george,jackson,lucas); FOLDS_2=(--speakers nicolas,theo,yweweler)
fi
S="$D/summary.txt"
STEPS=$(mktemp /tmp/results_steps.XXXXXX)
source examples/gpu_lanes.sh  # device_header, step
device_header "$S"
date -u +"%Y-%m-%dT%H:%MZ" | tee -a "$S"

budget() { python3 -c "print(round($1 * $SCALE, 1))"; }

F=(python3 examples/fsdd_digits.py --data .devdata/results/fsdd.npz --out "$D/results.jsonl")
M=(python3 examples/mitbih_interpatient.py --data .devdata/results/mitbih.npz
   --out "$D/results.jsonl")
AUG='{"crop": 0.1, "speed": 0.1, "gain_db": 6, "snr_db": [20, 40]}'
AUG_RATE='{"crop": 0.1, "speed": 0.1, "rate": 0.5, "gain_db": 6, "snr_db": [20, 40]}'
AUG_LOSO='{"crop": 0.1, "speed": 0.15, "gain_db": 6, "snr_db": [20, 40]}'

round1_a() {
  step 225 fsdd_s4d_aug "${F[@]}" --layer s4d --augment "$AUG" --epochs 80 --patience 15 \
    --dropout 0.15 --weight-decay 0.05 --label-smoothing 0.1 \
    --max-time "$(budget 175)" "${TINY_F[@]}"
  step 320 fsdd_loso_aug "${F[@]}" --layer s4d --loso --skip-standard "${LOSO_SPEAKERS[@]}" \
    --augment "$AUG_LOSO" --epochs 40 --patience 40 --dropout 0.15 --weight-decay 0.05 \
    --label-smoothing 0.1 --max-time "$(budget 38)" --budget-seconds 270 "${TINY_F[@]}"
}

round1_b() {
  step 225 fsdd_mamba_aug "${F[@]}" --layer mamba --augment "$AUG_RATE" --epochs 60 \
    --patience 15 --label-smoothing 0.1 --max-time "$(budget 175)" "${TINY_F[@]}"
  step 150 mitbih_rr "${M[@]}" --rr --epochs 15 --max-time "$(budget 100)" "${TINY_M[@]}"
  step 150 fsdd_s4d_aug_rate "${F[@]}" --layer s4d --augment "$AUG_RATE" --epochs 60 \
    --patience 15 --dropout 0.1 --max-time "$(budget 105)" "${TINY_F[@]}"
}

MAMBA_LOSO=(--layer mamba --loso --skip-standard --augment "$AUG_LOSO" --epochs 40
            --patience 40 --label-smoothing 0.1)

round2_a() {
  step 340 fsdd_loso_mamba_1 "${F[@]}" "${MAMBA_LOSO[@]}" "${FOLDS_1[@]}" \
    --max-time "$(budget 92)" "${TINY_F[@]}"
  step 110 mitbih_rr_sqrt "${M[@]}" --rr --class-weight sqrt --epochs 15 \
    --max-time "$(budget 60)" "${TINY_M[@]}"
  step 110 mitbih_rr_sqrt_baseline "${M[@]}" --rr --class-weight sqrt --baseline \
    --epochs 15 --max-time "$(budget 60)" "${TINY_M[@]}"
}

round2_b() {
  step 340 fsdd_loso_mamba_2 "${F[@]}" "${MAMBA_LOSO[@]}" "${FOLDS_2[@]}" \
    --max-time "$(budget 92)" "${TINY_F[@]}"
  step 200 fsdd_mamba_aug_seed1 "${F[@]}" --layer mamba --augment "$AUG_RATE" --epochs 60 \
    --patience 15 --label-smoothing 0.1 --seed 1 --rates 8000,4000,5333,6000,12000,16000 \
    --max-time "$(budget 150)" "${TINY_F[@]}"
}

# Round 3: leave-one-speaker-out ensemble. S4D (all six folds) and Mamba (two lanes of three
# folds) train at the same time; each fit saves its test probabilities, and
# examples/loso_ensemble.py averages the two models per fold.
P="$D/proba"; mkdir -p "$P"
S4D_LOSO=(--layer s4d --loso --skip-standard --augment "$AUG_LOSO" --epochs 40 --patience 40
          --dropout 0.15 --weight-decay 0.05 --label-smoothing 0.1 --proba-dir "$P")
round3_a() {
  step 500 fsdd_loso_s4d "${F[@]}" "${S4D_LOSO[@]}" "${LOSO_SPEAKERS[@]}" \
    --max-time "$(budget 45)" "${TINY_F[@]}"
}
round3_b() {
  step 500 fsdd_loso_mamba_1 "${F[@]}" "${MAMBA_LOSO[@]}" "${FOLDS_1[@]}" --proba-dir "$P" \
    --max-time "$(budget 110)" "${TINY_F[@]}"
}
round3_c() {
  step 500 fsdd_loso_mamba_2 "${F[@]}" "${MAMBA_LOSO[@]}" "${FOLDS_2[@]}" --proba-dir "$P" \
    --max-time "$(budget 110)" "${TINY_F[@]}"
}

ROUND=${ROUND:-2}
LOG="$D/lane_a.log" "round${ROUND}_a" & A=$!
LOG="$D/lane_b.log" "round${ROUND}_b" & B=$!
C=
[ "$ROUND" = 3 ] && { LOG="$D/lane_c.log" round3_c & C=$!; }
wait "$A" "$B" $C
[ "$ROUND" = 3 ] && python3 examples/loso_ensemble.py "$P" | tee -a "$S"

{ echo "== steps"; cat "$STEPS"; echo "== results ($(( $(date +%s) - T0 )) s in all)"
} | tee -a "$S"
rm -f "$STEPS"
python3 - "$D/results.jsonl" <<'EOF' | tee -a "$S"
import json, sys
try:
    rows = [json.loads(line) for line in open(sys.argv[1])]
except FileNotFoundError:
    rows = []
for r in rows:
    if "acc_8000" in r:
        accs = " ".join(f"{k[4:]} {v:.3f}" for k, v in r.items() if k.startswith("acc_"))
        print(f"{r['setting']:<16} {r['layer']:<6} ep {r['epochs_run']:>3} "
              f"({r['epoch_seconds']} s/ep, fit {r['fit_seconds']} s) val {r['val_best']:.3f} | "
              f"{accs} | aug {r['augment']}")
    elif "macro_f1" in r:
        print(f"MIT-BIH rr={r['rr_features']} weight={r.get('class_weight')} "
              f"baseline={r.get('baseline_removed')} ep {r['epochs_run']} fit {r['fit_seconds']} s "
              f"val {r['val_best']:.3f} | acc {r['accuracy']:.3f} macro-F1 "
              f"{r['macro_f1']:.3f} recall {r['recall']}")
for layer in ("s4d", "mamba"):
    loso = [r["acc_8000"] for r in rows
            if r.get("setting", "").startswith("LOSO") and r.get("layer") == layer]
    if loso:
        print(f"LOSO {layer} mean over {len(loso)} folds: {sum(loso) / len(loso):.3f}")
EOF
