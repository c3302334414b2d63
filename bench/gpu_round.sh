#!/usr/bin/env bash
# One GPU validation round (../shared/GPU.md): kernel tests on CUDA at real sizes, then the
# benchmarks, every result under $OUT. Run it on the lent GPU machine from the repository root.
#
# That machine has CUDA torch and its own Triton but lacks some packages: carry them as wheels
# in the ignored folder .whl (total under 64 MiB), prepared on the development machine with
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform any -d .whl \
#       torch-linear-assignment==0.1.0 colour-science==0.4.7
#
# and call the device tool with carry [".whl"] and the command `bash bench/gpu_round.sh`.
# The video pipeline needs FFmpeg (programs and shared libraries), which that machine lacks and
# which does not fit in the carry limit beside the wheels; the video benchmarks skip without it.
set -uo pipefail
OUT=${OUT:-bench/results/gpu-run}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
    date -u +%Y-%m-%dT%H:%M:%SZ
} | tee "$OUT/machine.txt"

# 1. Kernels against their references and oracles on CUDA, real sizes included.
python3 -m pytest -q -p no:cacheprovider tests/kernels tests/test_assign.py tests/test_render.py \
    2>&1 | tee "$OUT/tests.log"

# 2. Microbenchmarks (kernels against their torch baselines, % of measured copy bandwidth) and
#    assignment at 8160 x 20000.
python3 -m pytest -q -p no:cacheprovider bench/test_bench_oklab.py bench/test_bench_grid.py \
    bench/test_bench_cost.py bench/test_bench_assign.py \
    --benchmark-json="$OUT/kernels.json" 2>&1 | tee "$OUT/bench.log"

# 3. End to end: the pipeline alone on the GPU workload (1080p, 8160 cells, 10k tiles); the
#    decode + encode figure needs FFmpeg and skips without it.
python3 -m pytest -q -p no:cacheprovider bench/test_bench_e2e.py bench/test_bench_image.py \
    --benchmark-json="$OUT/e2e.json" 2>&1 | tee "$OUT/e2e.log"
