# Sourced (`. kernels/bench/gpu_install.sh`) by the gpu_*.sh scripts, from the repository root
# on the GPU machine: installs the carried wheels (`.whl`: wfdb, soundfile and their deps) into
# /tmp/site and this checkout in editable mode; stops the calling script if either fails.
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/gpu_pip.log 2>&1 \
    || { tail -5 /tmp/gpu_pip.log; exit 1; }
