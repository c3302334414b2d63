"""Every Triton kernel compiles for sm_90 (H100, H200) without register spills, no GPU needed.

The interpreter that runs the other kernel tests on CPU accepts code the GPU compiler rejects,
and cannot see spills. ``tests/kernels/compile_sm90.py`` compiles each kernel ahead of time with
the ptxas bundled in the Triton wheel, in every configuration its launcher uses. It runs in a
subprocess because this process imported ``kernels`` with ``TRITON_INTERPRET=1`` (see
``tests/conftest.py``), and compiling needs the kernels as compiled ``JITFunction`` objects.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
# The compilation takes well under a minute on two cores; this only stops a hang.
TIMEOUT_SECONDS = 600


def describe(result: dict) -> str:
    """A failed launch: kernel, config, and its compile error or its spills and registers."""
    where = f"{result['kernel']} [{result['label']}]"
    if result["error"] is not None:
        return f"{where}: does not compile: {result['error']}"
    return f"{where}: {result['spills']} spilled words at {result['registers']} registers"


def test_every_kernel_compiles_for_sm90_without_spills() -> None:
    command = [sys.executable, "-m", "tests.kernels.compile_sm90", "--json"]
    run = subprocess.run(
        command, cwd=REPOSITORY, capture_output=True, text=True, timeout=TIMEOUT_SECONDS
    )
    try:
        # The report is the last line: nothing printed before it can break the parse.
        report = json.loads(run.stdout.splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"{' '.join(command)} exited with {run.returncode}:\n{run.stderr[-4000:]}")
    if report["unavailable"]:
        pytest.skip(f"cannot compile for sm_90 with {report['toolchain']}: {report['unavailable']}")
    results = report["results"]
    assert results, "no kernel launches were compiled"
    failures = [r for r in results if r["error"] is not None or r["spills"] != 0]
    assert not failures, (
        f"{len(failures)} of {len(results)} sm_90 launches failed ({report['toolchain']}):\n"
        + "\n".join(map(describe, failures))
    )
