# Sourced by examples/results_gpu*.sh (from the repository root): the parts of a device round
# that every results script shares.
#
# device_header FILE   writes torch's version and device, and the commit, to FILE (and stdout)
# step LIMIT NAME cmd  runs cmd under `timeout` for min(LIMIT, seconds left before $DEADLINE),
#                      appending its output to $LOG and "NAME: exit RC after S s" to $STEPS;
#                      skipped (and said so) when 15 s or less are left

device_header() {
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) \
    if torch.cuda.is_available() else 'cpu')" | tee "$1"
  git log -1 --format='commit %h %s' 2>/dev/null | tee -a "$1"
}

step() {
  local limit=$1 name=$2; shift 2
  local left=$((DEADLINE - $(date +%s) - 3))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 15 ]; then echo "$name: skipped, no time left" >> "$STEPS"; return; fi
  local t0=$(date +%s)
  echo "=== $name" >> "$LOG"
  timeout -k 5 "$limit" "$@" >> "$LOG" 2>&1
  echo "$name: exit $? after $(( $(date +%s) - t0 )) s (limit $limit s)" >> "$STEPS"
}
