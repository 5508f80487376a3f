#!/usr/bin/env bash
# Every GPU check of the project in one run (about three minutes on an H100/H200 with CuPy):
#   1. the trainer tests, trained on the GPU (QUEUESERVER_TEST_DEVICE=gpu:0), plus the GPU-only tests;
#   2. the trainer issue's feeding benchmark: MLP 784-4096-4096-4096-10 at batch 4096, fed from the
#      queue server by loader processes vs the same trainer on data already on the GPU.
# Extra wheels the machine lacks may sit in .whl/ (git-ignored through .git/info/exclude), fetched with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl pytest-asyncio==1.5.0 google-crc32c==1.9.0 isal==1.9.1 \
#       pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1
#
#     bash benchmarks/gpu_checks.sh [OUT_DIR]
set -u
out=${1:-${OUT:-/tmp}}
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())"
nproc
echo "== 1. trainer and backend tests on gpu:0"
QUEUESERVER_TEST_DEVICE=gpu:0 timeout 240 python3 -m pytest -q -p no:cacheprovider -rs tests/compute 2>&1 | tee "$out/gpu_tests.log" | tail -15
echo "== 2. feeding benchmark"
timeout 300 python3 benchmarks/trainer.py --device gpu:0 --model mlp:784,4096,4096,4096,10 --batch 4096 \
    --samples 600000 --loaders 4 --repeat 3 2>&1 | tee "$out/gpu_bench.log"
