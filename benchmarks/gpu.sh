#!/usr/bin/env bash
# The benchmark on the lent GPU machine, with Keras 3's JAX or PyTorch backend (that machine has
# JAX, PyTorch, OpenCV, h5py and PyYAML but no TensorFlow and no Keras).
#
#   here, once:   bash benchmarks/gpu.sh download      # Keras and its missing needs as Python 3.12 wheels in .whl/
#   there:        bash benchmarks/gpu.sh run jax|torch [benchmark options...]
#
# `run` installs the wheels into /tmp/site and writes its CSV to $OUT (or benchmarks/) as gpu-<backend>.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
download)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
    for wheel in keras==3.15.1 namex==0.1.0 optree==0.20.0; do
        python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 -d .whl "$wheel"
    done
    ;;
run)
    backend="${2:?backend: jax or torch}"
    shift 2
    [ -d /tmp/site/keras ] ||
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND="$backend" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 -c "import importlib, numpy; print('numpy', numpy.__version__, '$backend', importlib.import_module('$backend').__version__)"
    python3 -m benchmarks.run --no-peers --csv "${OUT:-benchmarks}/gpu-${backend}.csv" "$@"
    ;;
*)
    sed -n '2,9p' "$0"
    exit 2
    ;;
esac
