# Sourced (`. kernels/bench/gpu_install.sh`) by the gpu_*.sh scripts, from the repository root
# on the GPU machine: installs the carried wheels (`.whl`: wfdb, soundfile and their deps) into
# /tmp/site and this checkout in editable mode; stops the calling script if either fails.
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/gpu_pip.log 2>&1 \
    || { tail -5 /tmp/gpu_pip.log; exit 1; }

# gpu_header FILE: the GPU's name, driver and SM clock, and the commit where a .git exists (the
# shipped snapshots have none), written to FILE and to stdout.
gpu_header() {
  nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader | tee "$1"
  git log -1 --format='commit %h %s' 2>/dev/null | tee -a "$1" || true
}
