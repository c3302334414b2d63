"""Where Triton is not loaded: a CPU-only torch build without the interpreter.

There ``kernels`` gets inert stand-ins for ``triton`` (``kernels/_triton.py``): the package and
everything above it import without loading Triton's compiler library, and every call runs the
pure-torch references, with the results this process's references give. Checked in a fresh
interpreter, since this one imported ``kernels`` with the interpreter on (``tests/conftest.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from kernels import cell_features, cost_topk, oklab_to_srgb, srgb_to_oklab
from tests.processes import child_env

_SCRIPT = """
import json, sys, torch
import mosaic  # the whole package, kernels included
from kernels import cell_features, cost_topk, oklab_to_srgb, srgb_to_oklab
from kernels.dispatch import TRITON_LOADED, use_triton

generator = torch.Generator().manual_seed(0)
frame = torch.randint(0, 256, (2, 3, 36, 60), dtype=torch.uint8, generator=generator)
cells, tiles = torch.rand(9, 12, generator=generator), torch.rand(31, 12, generator=generator)
lab = srgb_to_oklab(frame)
print(json.dumps({
    "triton_imported": "triton" in sys.modules,
    "triton_loaded": TRITON_LOADED,
    "use_triton": use_triton(frame),
    "lab": lab.flatten().tolist(),
    "srgb": oklab_to_srgb(lab).flatten().tolist(),
    "features": cell_features(frame, 6).flatten().tolist(),
    "top": cost_topk(cells, tiles, 4)[0].flatten().tolist(),
}))
"""


@pytest.mark.skipif(
    torch.version.cuda is not None or torch.version.hip is not None,
    reason="a GPU build of torch always loads Triton",
)
def test_a_cpu_build_runs_the_references_without_loading_triton():
    env = child_env(TRITON_INTERPRET="0")
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert not result["triton_imported"] and not result["triton_loaded"]
    assert not result["use_triton"]

    # The same inputs through this process's references (TRITON_INTERPRET=0 at call time).
    generator = torch.Generator().manual_seed(0)
    frame = torch.randint(0, 256, (2, 3, 36, 60), dtype=torch.uint8, generator=generator)
    cells, tiles = torch.rand(9, 12, generator=generator), torch.rand(31, 12, generator=generator)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_INTERPRET", "0")
        lab = srgb_to_oklab(frame)
        expected = {
            "lab": lab,
            "srgb": oklab_to_srgb(lab),
            "features": cell_features(frame, 6),
            "top": cost_topk(cells, tiles, 4)[0],
        }
    for name, values in expected.items():
        assert torch.equal(torch.tensor(result[name], dtype=values.dtype), values.flatten()), name
