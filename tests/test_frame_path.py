"""The device-resident frame step: analyse, assign (method ``"auction"``) and compose, frame
after frame, read nothing back from the device.

On a GPU a host sync stalls the pipeline until the device catches up; on a CPU nothing waits, so
the promise is checked by counting the operations that would sync (``tests/syncs.py``) while the
real kernels run in Triton's interpreter, the code path CUDA takes.
"""

from __future__ import annotations

import pytest

import mosaic.assign.auction as auction
from kernels.dispatch import interpreting
from mosaic.config import MosaicConfig
from mosaic.engine import FrameRenderer
from mosaic.temporal import TemporalCoherence
from tests.scenes import add_noise, landscape, photo_pool
from tests.syncs import count_syncs


@pytest.mark.skipif(not interpreting(), reason="the kernel path: TRITON_INTERPRET=1 on a CPU")
def test_ten_steady_frames_of_the_whole_step_read_nothing_back(monkeypatch):
    # Small round budgets: the interpreter runs every launch of a budget, as a GPU would.
    monkeypatch.setattr(auction, "COLD_STAGES", 4)
    monkeypatch.setattr(auction, "WARM_STAGES", 2)
    config = MosaicConfig(cell=8, method="auction", device="cpu")  # colour transfer and hold on
    renderer = FrameRenderer(photo_pool(40, tile_size=8), config)
    temporal, hold = TemporalCoherence(config.temporal), renderer.colour_hold()
    scene = landscape(32, 48, seed=3)

    def step(index: int) -> None:
        analysis = renderer.analyse(add_noise(scene, 2.0, seed=index))
        assignment, _ = renderer.choose(analysis, temporal)
        renderer.compose(analysis, assignment.tiles.reshape(analysis.grid), hold=hold)

    for index in range(2):  # the cold first frame, then one warm frame
        step(index)
    with count_syncs() as syncs:
        for index in range(2, 12):
            step(index)
    assert not syncs, f"host syncs in steady frames: {dict(syncs)}"
