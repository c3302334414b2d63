#!/usr/bin/env bash
# One GPU validation round on a borrowed H100/H200 machine: one call that ends within 8 minutes,
# results under $OUT. Every step runs under its own `timeout`, so a slow step still leaves the
# others' results; the summary at the end prints each step's exit status and duration.
#
#   bash bench/gpu_round.sh            with carry [".whl"]
#
# Steps (seconds allowed): the CUDA tests (140: the frame step's CUDA graph and the GPU executor
# first, then the kernels), cost_topk and cost_matrix (85: about 25 kernels compile first), the
# other kernel microbenchmarks (80), the steady assignment at 8160 x 20000 (40: windows, the
# auction eager and as a CUDA graph), the 1080p pipeline alone and with decode + encode, default
# (the auction) and windows (95), last the first frames at 8160 x 20000 (35: a cold auction solve
# captures a graph each). Under 8 minutes with the wheels' installation.
#
# That machine has CUDA torch, Triton, pytest, pytest-benchmark, pytest-timeout, hypothesis,
# SciPy, scikit-image, Pillow and tqdm, but neither FFmpeg nor torchcodec: videos are decoded and
# encoded by PyAV (the `av` wheel carries its own FFmpeg with libx264; the sink's one-frame probe
# finds that H100/H200 have no NVENC and falls back to libx264). What it lacks travels as wheels
# in the ignored folder .whl (about 45 MB of the 64 MiB a call may carry), prepared on the
# development machine from the repository root with:
#
#   printf '/.whl/\n' >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform any -d .whl torch-linear-assignment==0.1.0 colour-science==0.4.7 av==18.1.0
set -uo pipefail
OUT=${OUT:-bench/results/gpu-run}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 HYPOTHESIS_PROFILE=cuda
log="$OUT/round.log"
: > "$log"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl 2>&1 | tee -a "$log"
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "no .whl: packages the machine lacks are missing, tests needing them skip or fail" \
        | tee -a "$log"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
    nproc
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
    python3 -c "import av; print('PyAV', av.__version__, 'FFmpeg', av.ffmpeg_version_info)" \
        || echo "no PyAV"
    date -u +%Y-%m-%dT%H:%M:%SZ
} 2>&1 | tee "$OUT/machine.txt" | tee -a "$log"

summary=()
step() {  # step NAME SECONDS PYTEST-ARGS...: one pytest run under its own time limit
    local name=$1 seconds=$2 started=$SECONDS status
    shift 2
    echo "=== $name (at most ${seconds} s)" | tee -a "$log"
    timeout "$seconds" python3 -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee -a "$log"
    status=${PIPESTATUS[0]}
    summary+=("$name: exit $status in $((SECONDS - started)) s")
}

# 1. The frame step (its CUDA graph), the GPU executor, the frame path and every kernel on CUDA
#    at real sizes, against references and oracles (the "cuda" hypothesis profile bounds
#    examples and distinct compiled shapes; 30 s per test where pytest-timeout is installed, as
#    it is there).
per_test=()
python3 -c "import pytest_timeout" 2> /dev/null && per_test=(--timeout=30)
step tests 140 "${per_test[@]}" -k cuda \
    tests/test_frame_step.py tests/test_pipeline_gpu.py tests/test_frame_path.py \
    tests/test_motion.py tests/kernels tests/test_assign.py tests/test_auction.py \
    tests/test_render.py tests/adapters/test_sink.py tests/adapters/test_yuv.py
# 2. The kernels against their torch baselines, timed alike in one run, against the copy
#    bandwidth or the matmul rate measured in the same run.
step cost 85 --benchmark-json="$OUT/cost.json" bench/test_bench_cost.py
step kernels 80 --benchmark-json="$OUT/kernels.json" \
    bench/test_bench_oklab.py bench/test_bench_grid.py bench/test_bench_cell_analysis.py \
    bench/test_bench_composite.py bench/test_bench_block_energy.py
# 3. The steady assignment at the GPU size: windows, the auction eagerly and as a CUDA graph.
step assign 40 --benchmark-json="$OUT/assign.json" -k "8160x20000 and (steady or graph)" \
    bench/test_bench_assign.py
# 4. 1080p, 8160 cells, 10k tiles: the pipeline alone and with decode + encode (PyAV, libx264),
#    with "auto" (the auction, on CUDA) and with the windows solver.
step e2e 95 --benchmark-json="$OUT/e2e.json" -k "(test_pipeline or test_video) and gpu" \
    bench/test_bench_e2e.py
# 5. The first frames at the GPU size (windows, the auction cold at reuse 1 to 3), last: a cold
#    auction launches its first stages one by one (then replays a graph).
step assign-cold 35 --benchmark-json="$OUT/assign-cold.json" -k "8160x20000 and first_frame" \
    bench/test_bench_assign.py

printf '%s\n' "=== summary" "${summary[@]}" | tee -a "$log" "$OUT/summary.txt"
