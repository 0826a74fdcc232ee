#!/usr/bin/env bash
# docs/results.md "Generative audio (issue 6)": SaShiMi (the shipped arrangement, unet=False)
# on FSDD in ONE device call of <= 7 minutes, from the snapshot root:
#
#   bash examples/gpu_sashimi.sh            (SMOKE=1: the same steps on the CPU, tiny, --quick)
#
# Five lanes of examples/sashimi_fsdd.py run side by side on the one GPU, each training for the
# same wall-clock budget (BUDGET seconds, AudioGenerator / TrainConfig max_time):
#   uncond (2 pairs per tier), cond (2 pairs, digit label), uncond8 (8 pairs, the default
#   depth), wavenet (the baseline), clf (the judging S4D classifier, CLF_BUDGET seconds).
# The lanes share the device, so their epoch times are contended; the `profile` step
# times each model's training step alone (first). `judge` merges everything.
# Every step has a hard `timeout`; the whole script a deadline (TOTAL_SECONDS from its start).
# Output under $OUT/gen/ (5 files): summary.txt, results.json, samples.npz, logs.tar.gz (lane
# logs + JSON, steps, GPU utilisation), model_uncond.tar.gz (the 2-pair unconditional model).
set -u
T0=$(date +%s)
OUT=${OUT:-gen-out}
D="$OUT/gen"
W=$(mktemp -d /tmp/gen.XXXXXX)
mkdir -p "$D"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-3}
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
if [ "${SMOKE:-0}" = 1 ]; then
  BUDGET=${BUDGET:-2}; CLF_BUDGET=${CLF_BUDGET:-2}; EXTRA=(--quick --layer s4d)
  MEM1=(); MEM8=(); MEMC=(); TOTAL_SECONDS=${TOTAL_SECONDS:-420}
  POST=300  # five CPU-bound lanes on two cores
else
  source kernels/bench/gpu_install.sh
  EXTRA=()  # caps from CPU measurements of the largest training batch (fp32): 8 pairs
  # ~11.6 GB, WaveNet ~8.6 GB, 2 pairs ~3.7 GB; the classifier ~8 GB (docs/results.md, issue 3)
  MEM1=(--cuda-memory-fraction 0.17); MEM8=(--cuda-memory-fraction 0.22)
  MEMC=(--cuda-memory-fraction 0.2)
  command -v nvidia-smi > /dev/null && {
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 \
      > "$W/gpu.csv" 2>&1 & SMI=$!; }
fi
DEADLINE=$((T0 + ${TOTAL_SECONDS:-395}))
RESERVE=45  # seconds kept for the judge after the lanes
S="$D/summary.txt"
source examples/gpu_lanes.sh  # device_header, step
device_header "$S"
echo "installed after $(( $(date +%s) - T0 )) s" | tee -a "$S"

P=(python3 examples/sashimi_fsdd.py --data .devdata/fsdd --out "$D" --work "$W" "${EXTRA[@]}")
STEPS="$W/steps.txt"
# run NAME LIMIT args...: one lane, `step` with its own log and RESERVE s kept before DEADLINE
run() {
  local name=$1 limit=$2; shift 2
  DEADLINE=$((DEADLINE - RESERVE - 2)) LOG="$W/$name.log" step "$limit" "$name" "${P[@]}" "$@"
}
# first, each model's training step alone on the device (the lanes below share it)
run profile 30 --stage profile
# training budget per model: what the deadline leaves after the install, the profile, the
# lanes' start-up and scoring/sampling (~115 s), and RESERVE; at most 300 s
BUDGET=${BUDGET:-$(( DEADLINE - $(date +%s) - RESERVE - 115 < 300 ? \
  DEADLINE - $(date +%s) - RESERVE - 115 : 300 ))}
CLF_BUDGET=${CLF_BUDGET:-$((BUDGET - 40))}
echo "BUDGET=$BUDGET CLF_BUDGET=$CLF_BUDGET SMOKE=${SMOKE:-0} $(date -u +%FT%TZ)" | tee -a "$S"
LANE_LIMIT=$((BUDGET + ${POST:-110}))
PIDS=()
for lane in uncond cond wavenet; do
  run "$lane" "$LANE_LIMIT" --stage "$lane" --budget "$BUDGET" "${MEM1[@]}" & PIDS+=($!)
done
run uncond8 "$LANE_LIMIT" --stage uncond8 --budget "$BUDGET" --skip rate "${MEM8[@]}" \
  & PIDS+=($!)
run clf "$((CLF_BUDGET + 80))" --stage clf --clf-budget "$CLF_BUDGET" "${MEMC[@]}" & PIDS+=($!)
wait "${PIDS[@]}"
RESERVE=0
run judge 45 --stage judge
[ -n "${SMI:-}" ] && kill "$SMI" 2> /dev/null

{ echo "== steps"; cat "$W/steps.txt"; echo "== results"
  grep -v "^\[\|^===" "$W/judge.log" 2> /dev/null | tail -20
  grep -h "FAILED\|Error\|error" "$W"/*.log 2> /dev/null | head -10
  echo "total $(( $(date +%s) - T0 )) s"; } | tee -a "$S"
tar -czf "$D/logs.tar.gz" -C "$W" --exclude models --exclude clf --exclude "*.npz" .
[ -d "$W/models/uncond" ] && tar -czf "$D/model_uncond.tar.gz" -C "$W/models" uncond
ls -la "$D"
