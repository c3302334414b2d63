#!/usr/bin/env bash
# One GPU validation round on a borrowed GPU machine, results under $OUT, in two calls of the
# tool that runs commands there, each well inside its 10-minute limit per command (every step
# has its own timeout, so a slow step still leaves the others' results):
#
#   1. `bash bench/gpu_round.sh kernels`, carry [".whl/kernels", ".ffmpeg"]: the kernel tests on
#      CUDA at real sizes, then the kernel and assignment microbenchmarks. It also unpacks ffmpeg
#      into .ffbin for the second call.
#   2. `bash bench/gpu_round.sh e2e`, carry [".whl/e2e"]: the GPU workload end to end (1080p,
#      8160 cells, 10k tiles): the pipeline alone, with decode + encode, and render_image.
#
# Make the second call right after the first: the machine goes back after 30 s idle, and a fresh
# one has no .ffbin, so the decode + encode benchmark would skip (e2e.log says so).
#
# That machine has CUDA torch, Triton, pytest, hypothesis, pytest-benchmark, SciPy and Pillow,
# but neither FFmpeg nor torchcodec's FFmpeg libraries. What it lacks travels in ignored folders
# (under 64 MiB a call), prepared on the development machine from the repository root with:
#
#   printf '/.whl/\n/.ffmpeg/\n/.ffbin/\n' >> .git/info/exclude
#   get() { python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform any -d "$@"; }
#   get .whl/kernels torch-linear-assignment==0.1.0 colour-science==0.4.7
#   get .whl/e2e torch-linear-assignment==0.1.0 av==18.1.0
#   get /tmp/imageio-ffmpeg imageio-ffmpeg==0.8.1   # a static ffmpeg program with libx264
#   mkdir -p .ffmpeg && unzip -p /tmp/imageio-ffmpeg/imageio_ffmpeg-*.whl \
#       'imageio_ffmpeg/binaries/ffmpeg-*' | xz -T0 -9 > .ffmpeg/ffmpeg.xz   # 48 MB, minutes
#
# So on the GPU the video is decoded by PyAV on the CPU (torchcodec's NVDEC path needs FFmpeg's
# shared libraries, which that machine lacks) and encoded by libx264 (H100 and H200 have no
# NVENC; the sink's one-frame probe finds that out and falls back).
set -uo pipefail
stage=${1:-}
case "$stage" in
    kernels) wheels=.whl/kernels ;;
    e2e) wheels=.whl/e2e ;;
    *) echo "usage: bash bench/gpu_round.sh kernels|e2e" >&2; exit 2 ;;
esac
OUT=${OUT:-bench/results/gpu-run}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
if [ -d "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$wheels"/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "no $wheels: packages the machine lacks are missing, tests needing them skip or fail"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -f .ffmpeg/ffmpeg.xz ]; then
    mkdir -p .ffbin && xz -dc .ffmpeg/ffmpeg.xz > .ffbin/ffmpeg && chmod +x .ffbin/ffmpeg
fi
[ -x .ffbin/ffmpeg ] && export PATH="$PWD/.ffbin:$PATH"

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
    command -v ffmpeg >/dev/null && ffmpeg -hide_banner -version | head -1 || echo "no ffmpeg"
    date -u +%Y-%m-%dT%H:%M:%SZ
} | tee "$OUT/machine-$stage.txt"

run() {  # run SECONDS LOG ARGS...: one pytest step under its own time limit
    local seconds=$1 log=$2
    shift 2
    timeout "$seconds" python3 -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$OUT/$log"
}

if [ "$stage" = kernels ]; then
    # Kernels against their references and oracles on CUDA, real sizes included.
    run 240 tests.log tests/kernels tests/test_assign.py tests/test_render.py
    # Kernels against their torch baselines (% of the copy bandwidth measured in the same run)
    # and the assignment at 8160 x 20000.
    run 300 bench.log bench/test_bench_oklab.py bench/test_bench_grid.py \
        bench/test_bench_cost.py bench/test_bench_assign.py --benchmark-json="$OUT/kernels.json"
else
    # The GPU workload only: the CPU workload and the CPU scaling runs are not for this machine.
    run 540 e2e.log bench/test_bench_e2e.py bench/test_bench_image.py -k "gpu or render_image" \
        --benchmark-json="$OUT/e2e.json"
fi
