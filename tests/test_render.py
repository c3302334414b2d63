"""Compositing and colour transfer (``mosaic.render``), on the pure-torch reference path."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from kernels import Blend, cost_matrix, srgb_to_oklab
from kernels.composite import rgb_to_yuv420_reference
from kernels.dispatch import use_triton
from mosaic import MosaicConfig
from mosaic.colour import (
    MAX_SPREAD_GAIN,
    CellStats,
    ColourHold,
    cell_stats,
    tile_stats,
)
from mosaic.engine import FrameRenderer
from mosaic.metrics import fidelity
from mosaic.render import render_mosaic
from mosaic.temporal import TemporalCoherence
from tests.scenes import add_noise, landscape, photo_pool

pytestmark = pytest.mark.usefixtures("reference_path")

# Whether the kernels were decorated for the interpreter (tests/conftest.py, before any import of
# kernels): only then can CPU tensors run them.
KERNELS_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def textured_tiles(
    count: int, side: int, generator: torch.Generator, *, spread: int = 15
) -> torch.Tensor:
    """uint8 ``(count, 3, side, side)``: mid-range base colours with uniform per-pixel texture."""
    base = torch.randint(90, 166, (count, 3, 1, 1), generator=generator)
    texture = torch.randint(-spread, spread + 1, (count, 3, side, side), generator=generator)
    return (base + texture).to(torch.uint8)


def textured_frame(rows: int, cols: int, cell: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 ``(3, rows * cell, cols * cell)``: in-gamut cell colours with mild texture."""
    base = torch.randint(70, 186, (3, rows, 1, cols, 1), generator=generator)
    texture = torch.randint(-10, 11, (3, rows, cell, cols, cell), generator=generator)
    return (base + texture).reshape(3, rows * cell, cols * cell).to(torch.uint8)


def nearest_mean_choice(frame: torch.Tensor, tiles: torch.Tensor, cell: int) -> torch.Tensor:
    """int64 ``(rows, cols)``: for each cell, the tile with the nearest mean Oklab colour."""
    cells = cell_stats(frame, cell).mean
    rows, cols = cells.shape[:2]
    distances = cost_matrix(cells.reshape(-1, 3), tile_stats(tiles)[0])
    return distances.argmin(dim=1).reshape(rows, cols)


def oklab_block_stats(images: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent float64 ``(N, 3, H // block, W // block)`` block mean and population std."""
    lab = srgb_to_oklab(images).double()
    n, _, height, width = lab.shape
    blocks = lab.reshape(n, 3, height // block, block, width // block, block)
    return blocks.mean(dim=(3, 5)), blocks.std(dim=(3, 5), correction=0)


# --------------------------------------------------------------------------- compositing


@given(
    pool=st.integers(1, 6),
    side=st.integers(1, 5),
    rows=st.integers(1, 4),
    cols=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_every_cell_gets_its_chosen_tile(pool: int, side: int, rows: int, cols: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    tiles = torch.randint(0, 256, (pool, 3, side, side), dtype=torch.uint8, generator=generator)
    choice = torch.randint(0, pool, (rows, cols), generator=generator)

    out = render_mosaic(tiles, choice)

    assert out.shape == (3, rows * side, cols * side) and out.dtype == torch.uint8
    for r in range(rows):
        for c in range(cols):
            block = out[:, r * side : (r + 1) * side, c * side : (c + 1) * side]
            assert torch.equal(block, tiles[choice[r, c]]), f"cell ({r}, {c})"


def test_composite_on_every_device(device: str):
    generator = torch.Generator().manual_seed(3)
    tiles = torch.randint(0, 256, (7, 3, 4, 4), dtype=torch.uint8, generator=generator)
    choice = torch.randint(0, 7, (3, 5), generator=generator)
    out = render_mosaic(tiles.to(device), choice.to(device))
    assert out.device.type == device
    expected = tiles[choice].permute(2, 0, 3, 1, 4).reshape(3, 12, 20)
    assert torch.equal(out.cpu(), expected)


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0])
def test_non_contiguous_inputs_give_the_same_frame(strength: float):
    generator = torch.Generator().manual_seed(4)
    tiles = textured_tiles(9, 6, generator)
    choice = torch.randint(0, 9, (4, 5), generator=generator)
    frame = textured_frame(4, 5, 6, generator)
    expected = render_mosaic(
        tiles, choice, color_strength=strength, cell_stats=cell_stats(frame, 6)
    )

    tiles_hwc = tiles.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels-last view
    choice_t = choice.T.contiguous().T
    frame_hwc = frame.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    assert not (tiles_hwc.is_contiguous() or choice_t.is_contiguous() or frame_hwc.is_contiguous())
    out = render_mosaic(
        tiles_hwc,
        choice_t,
        color_strength=strength,
        cell_stats=cell_stats(frame_hwc, 6),
        tile_stats=tile_stats(tiles_hwc),
    )
    assert torch.equal(out, expected)


# --------------------------------------------------------------------------- colour transfer


def test_strength_zero_is_bit_exact_tiles():
    generator = torch.Generator().manual_seed(5)
    tiles = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=generator)
    choice = torch.randint(0, 10, (3, 4), generator=generator)
    frame = textured_frame(3, 4, 8, generator)
    plain = render_mosaic(tiles, choice)
    transferred = render_mosaic(tiles, choice, color_strength=0.0, cell_stats=cell_stats(frame, 8))
    assert torch.equal(plain, transferred)
    assert torch.equal(plain, tiles[choice].permute(2, 0, 3, 1, 4).reshape(3, 24, 32))


def test_strength_one_matches_cell_mean_and_spread(device: str):
    generator = torch.Generator().manual_seed(6)
    tiles = textured_tiles(12, 8, generator).to(device)
    frame = textured_frame(5, 6, 8, generator).to(device)
    choice = torch.randint(0, 12, (5, 6), generator=generator).to(device)
    source = cell_stats(frame, 8)

    out = render_mosaic(
        tiles, choice, color_strength=1.0, cell_stats=source, tile_stats=tile_stats(tiles)
    )

    rendered = cell_stats(out, 8)
    assert (rendered.mean - source.mean).abs().max() < 2e-3
    # Every source spread here is within MAX_SPREAD_GAIN of its tile's, so it is matched too.
    assert (rendered.std - source.std).abs().max() < 2e-3


def test_tile_stats_are_optional():
    generator = torch.Generator().manual_seed(7)
    tiles = textured_tiles(12, 8, generator)
    frame = textured_frame(4, 3, 8, generator)
    choice = torch.randint(0, 12, (4, 3), generator=generator)
    stats = cell_stats(frame, 8)
    given_stats = render_mosaic(
        tiles, choice, color_strength=0.7, cell_stats=stats, tile_stats=tile_stats(tiles)
    )
    computed = render_mosaic(tiles, choice, color_strength=0.7, cell_stats=stats)
    assert (given_stats.int() - computed.int()).abs().max() <= 1


def test_spread_gain_is_capped_on_flat_tiles():
    generator = torch.Generator().manual_seed(8)
    flat = textured_tiles(1, 16, generator, spread=1)
    busy = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=generator)
    choice = torch.zeros(1, 1, dtype=torch.int64)

    out = render_mosaic(flat, choice, color_strength=1.0, cell_stats=cell_stats(busy, 16))

    _, tile_std = oklab_block_stats(flat, 16)
    _, out_std = oklab_block_stats(out[None], 16)
    quantisation = 2e-3  # rounding the output to uint8 adds its own small spread
    assert (out_std <= MAX_SPREAD_GAIN * tile_std + quantisation).all()


def test_fidelity_improves_with_strength():
    frame = add_noise(landscape(96, 128, seed=9), sigma=4, seed=9)
    tiles = textured_tiles(24, 8, torch.Generator().manual_seed(9))
    choice = nearest_mean_choice(frame, tiles, 8)
    stats = cell_stats(frame, 8)

    errors = [
        fidelity(
            frame,
            render_mosaic(tiles, choice, color_strength=s, cell_stats=stats),
            (12, 16),
        )["mean"]
        for s in (0.0, 0.5, 1.0)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.25 * errors[0]


# --------------------------------------------------------------------------- statistics


def test_tile_and_cell_stats_match_an_independent_computation():
    generator = torch.Generator().manual_seed(10)
    tiles = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8, generator=generator)
    frame = torch.randint(0, 256, (3, 12, 18), dtype=torch.uint8, generator=generator)

    mean, std = tile_stats(tiles)
    expected_mean, expected_std = oklab_block_stats(tiles, 6)
    torch.testing.assert_close(mean.double(), expected_mean.reshape(5, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(std.double(), expected_std.reshape(5, 3), atol=1e-6, rtol=0)

    stats = cell_stats(frame, 6)
    expected_mean, expected_std = oklab_block_stats(frame[None], 6)
    assert stats.mean.shape == stats.std.shape == (2, 3, 3)
    torch.testing.assert_close(
        stats.mean.double(), expected_mean[0].permute(1, 2, 0), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        stats.std.double(), expected_std[0].permute(1, 2, 0), atol=1e-6, rtol=0
    )


# --------------------------------------------------------------------------- validation


def _bad_calls():
    tiles = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    choice = torch.zeros(2, 3, dtype=torch.int64)
    stats = CellStats(torch.zeros(2, 3, 3), torch.zeros(2, 3, 3))
    return {
        "index too large": lambda: render_mosaic(tiles, torch.full((2, 3), 4)),
        "negative index": lambda: render_mosaic(tiles, torch.full((2, 3), -1)),
        "choice not 2-D": lambda: render_mosaic(tiles, torch.zeros(6, dtype=torch.int64)),
        "empty choice": lambda: render_mosaic(tiles, torch.zeros(0, 3, dtype=torch.int64)),
        "tiles without rows": lambda: render_mosaic(
            torch.zeros(4, 3, 0, 3, dtype=torch.uint8), choice
        ),
        "blend above 1": lambda: render_mosaic(
            tiles, choice, blend=Blend(torch.zeros(3, 4, 6, dtype=torch.uint8), 1.5)
        ),
        "tiles not RGB": lambda: render_mosaic(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), choice),
        "empty pool": lambda: render_mosaic(torch.zeros(0, 3, 2, 2, dtype=torch.uint8), choice),
        "strength above 1": lambda: render_mosaic(
            tiles, choice, color_strength=1.5, cell_stats=stats
        ),
        "strength NaN": lambda: render_mosaic(
            tiles, choice, color_strength=float("nan"), cell_stats=stats
        ),
        "no cell stats": lambda: render_mosaic(tiles, choice, color_strength=0.5),
        "cell stats grid": lambda: render_mosaic(
            tiles,
            choice,
            color_strength=0.5,
            cell_stats=CellStats(torch.zeros(3, 2, 3), torch.zeros(3, 2, 3)),
        ),
        "tile stats size": lambda: render_mosaic(
            tiles,
            choice,
            color_strength=0.5,
            cell_stats=stats,
            tile_stats=(torch.zeros(3, 3), torch.zeros(3, 3)),
        ),
        "frame not a cell multiple": lambda: cell_stats(torch.zeros(3, 5, 4, dtype=torch.uint8), 2),
    }


@pytest.mark.parametrize("case", list(_bad_calls()))
def test_bad_arguments_raise_one_clear_value_error(case: str):
    with pytest.raises(ValueError) as error:
        _bad_calls()[case]()
    assert "\n" not in str(error.value) and str(error.value)


def test_wrong_dtypes_raise_type_error():
    tiles = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    with pytest.raises(TypeError, match="int64"):
        render_mosaic(tiles, torch.zeros(2, 2))
    with pytest.raises(TypeError, match="uint8"):
        render_mosaic(tiles.float(), torch.zeros(2, 2, dtype=torch.int64))


# --------------------------------------------------------------------------- colour hold


def cell_blocks(image: torch.Tensor, side: int) -> torch.Tensor:
    """``(rows * cols, 3, side, side)``: the cells of a ``(3, rows * side, cols * side)`` image."""
    rows, cols = image.shape[1] // side, image.shape[2] // side
    return (
        image.reshape(3, rows, side, cols, side).permute(1, 3, 0, 2, 4).reshape(-1, 3, side, side)
    )


def test_colour_hold_keeps_unchanged_cells_and_recolours_the_others():
    generator = torch.Generator().manual_seed(7)
    tiles = textured_tiles(8, 6, generator)
    choice = torch.tensor([[0, 1, 2], [3, 4, 5]])
    mean = torch.rand(2, 3, 3, generator=generator) * 0.2 + torch.tensor([0.5, -0.05, -0.05])
    std = torch.rand(2, 3, 3, generator=generator) * 0.05
    hold = ColourHold(0.01)

    def render(stats: CellStats, tiles_chosen: torch.Tensor, **kwargs) -> torch.Tensor:
        return render_mosaic(
            tiles,
            tiles_chosen,
            color_strength=0.8,
            cell_stats=stats,
            tile_stats=tile_stats(tiles),
            **kwargs,
        )

    first = render(CellStats(mean, std), choice, hold=hold)
    assert torch.equal(first, render(CellStats(mean, std), choice))

    moved_mean, moved_std, moved_choice = mean.clone(), std.clone(), choice.clone()
    moved_mean[0, 0, 0] += 0.005  # within the tolerance: held
    moved_mean[0, 1, 1] += 0.05  # past it: recoloured
    moved_std[0, 2, 2] += 0.05  # spread past it: recoloured
    moved_choice[1, 0] = 6  # new tile: recoloured
    moved = CellStats(moved_mean, moved_std)
    second = cell_blocks(render(moved, moved_choice, hold=hold), 6)
    fresh = cell_blocks(render(moved, moved_choice), 6)
    before = cell_blocks(first, 6)
    recoloured = torch.tensor([False, True, True, True, False, False])
    assert torch.equal(second[recoloured], fresh[recoloured])
    assert torch.equal(second[~recoloured], before[~recoloured])
    assert not torch.equal(before[0], fresh[0])  # the held cell really differs from a fresh one


def test_colour_hold_starts_afresh_on_another_grid():
    generator = torch.Generator().manual_seed(8)
    tiles = textured_tiles(8, 4, generator)
    hold = ColourHold(1.0)  # holds anything that keeps its tile
    for rows, cols in ((2, 3), (3, 2)):
        choice = torch.arange(rows * cols).reshape(rows, cols)
        stats = CellStats(
            torch.rand(rows, cols, 3, generator=generator), torch.zeros(rows, cols, 3)
        )
        out = render_mosaic(tiles, choice, color_strength=1.0, cell_stats=stats, hold=hold)
        assert torch.equal(out, render_mosaic(tiles, choice, color_strength=1.0, cell_stats=stats))


def test_colour_hold_recolours_correctly_after_a_yuv_frame():
    """A frame drawn as YUV leaves no stale RGB frame behind: the next RGB frame, whose cells
    are all held from the YUV one, must not copy them from the RGB frame before it."""
    generator = torch.Generator().manual_seed(11)
    tiles = textured_tiles(8, 4, generator)
    choice = torch.arange(6).reshape(2, 3)
    first, second = (
        CellStats(torch.rand(2, 3, 3, generator=generator), torch.zeros(2, 3, 3)) for _ in range(2)
    )
    options = {"color_strength": 1.0, "tile_stats": tile_stats(tiles)}
    hold = ColourHold(0.0)
    render_mosaic(tiles, choice, cell_stats=first, hold=hold, **options)
    render_mosaic(tiles, choice, cell_stats=second, hold=hold, pixel_format="yuv420p", **options)
    held = render_mosaic(tiles, choice, cell_stats=second, hold=hold, **options)
    assert torch.equal(held, render_mosaic(tiles, choice, cell_stats=second, **options))


def test_colour_hold_refuses_a_negative_tolerance():
    with pytest.raises(ValueError, match="tolerance"):
        ColourHold(-0.1)
    with pytest.raises(ValueError, match="tolerance"):
        ColourHold(float("nan"))


# --------------------------------------------------------------------------- the kernel path


def use_kernels(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, run the Triton kernels: compiled on CUDA, in the interpreter on CPU."""
    if device == "cpu" and not KERNELS_INTERPRETED:
        pytest.skip("CPU tensors run the Triton kernels only in the interpreter")
    monkeypatch.setenv("TRITON_INTERPRET", "1" if device == "cpu" else "0")
    assert use_triton(torch.empty(0, device=device))


class HostSyncs(TorchDispatchMode):
    """Records the torch operations that read a device's values back to the host (on a GPU each
    waits for the queued work): scalars, lists, copies to the CPU, data-dependent shapes and
    boolean-mask indexing. ``tolist`` and ``numpy`` do not dispatch on a CPU, so those two
    methods are wrapped while recording."""

    SYNCING = frozenset(
        {
            torch.ops.aten._local_scalar_dense.default,  # .item(), bool(), int(), float()
            torch.ops.aten.is_nonzero.default,
            torch.ops.aten.equal.default,
            torch.ops.aten.nonzero.default,
            torch.ops.aten.masked_select.default,
            torch.ops.aten.argwhere.default,
            torch.ops.aten._unique2.default,
            torch.ops.aten.unique_consecutive.default,
            torch.ops.aten.repeat_interleave.Tensor,
        }
    )
    MASK_INDEXED = frozenset({torch.ops.aten.index.Tensor, torch.ops.aten.index_put_.default})
    COPIES = frozenset({torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default})

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._wrapped = pytest.MonkeyPatch()

    def __enter__(self) -> HostSyncs:
        for name in ("tolist", "numpy"):
            method = getattr(torch.Tensor, name)

            def recorded(tensor, *args, _method=method, _name=name, **kwargs):
                self.found.append(f"Tensor.{_name}")
                return _method(tensor, *args, **kwargs)

            self._wrapped.setattr(torch.Tensor, name, recorded)
        return super().__enter__()

    def __exit__(self, *exc_info) -> None:
        self._wrapped.undo()
        return super().__exit__(*exc_info)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        indices = args[1] if func in self.MASK_INDEXED else ()
        to_host = func in self.COPIES and _devices(args, kwargs, result) > {"cpu"}
        if func in self.SYNCING or to_host or any(_is_mask(i) for i in indices):
            self.found.append(str(func))
        return result


def _is_mask(index: object) -> bool:
    return isinstance(index, torch.Tensor) and index.dtype == torch.bool


def _devices(args: tuple, kwargs: dict, result: object) -> set[str]:
    """The device types of a copy's source and result, when the result is on the CPU."""
    tensors = [x for x in (*args, result) if isinstance(x, torch.Tensor)]
    if not tensors or tensors[-1].device.type != "cpu":
        return set()
    return {x.device.type for x in tensors}


def test_composing_video_frames_reads_nothing_back_from_the_device(device, monkeypatch):
    """FrameRenderer.compose with a colour hold, frame after frame (RGB and YUV): not one
    operation that makes a GPU wait, on the path a GPU runs. The size is not a multiple of the
    cell (cropped), and odd in the output (YUV padded)."""
    config = MosaicConfig(cell=8, color=0.6, tile_size=6, device=device)
    renderer = FrameRenderer(photo_pool(60, tile_size=8), config)
    frames = [add_noise(landscape(37, 45, seed=2), sigma=3, seed=i) for i in range(4)]
    temporal = TemporalCoherence(config.temporal)
    analyses = [renderer.analyse(frame) for frame in frames]
    choices = [renderer.choose(a, temporal)[0].tiles.reshape(a.grid) for a in analyses]
    hold = renderer.colour_hold()
    use_kernels(device, monkeypatch)
    with HostSyncs() as syncs:
        images = [renderer.compose(a, c, hold=hold) for a, c in zip(analyses, choices, strict=True)]
        yuv = renderer.compose(analyses[-1], choices[-1], pixel_format="yuv420p")
    assert syncs.found == []
    assert images[-1].shape == (3, 27, 33) and yuv.shape == (42, 34)
    assert torch.equal(yuv, rgb_to_yuv420_reference(renderer.compose(analyses[-1], choices[-1])))


def test_held_cells_keep_their_pixels_on_the_kernel_path(device, monkeypatch):
    """The kernel recolours every cell, held ones from the statistics the hold kept: their
    pixels come out identical, while a changed tile is drawn afresh."""
    generator = torch.Generator().manual_seed(9)
    tiles = textured_tiles(8, 6, generator).to(device)
    choice = torch.tensor([[0, 1, 2], [3, 4, 5]], device=device)
    mean = torch.rand(2, 3, 3, generator=generator) * 0.2 + torch.tensor([0.5, -0.05, -0.05])
    std = torch.rand(2, 3, 3, generator=generator) * 0.05
    use_kernels(device, monkeypatch)
    options = {"color_strength": 0.8, "tile_stats": tile_stats(tiles)}
    hold = ColourHold(0.01)
    first = render_mosaic(tiles, choice, cell_stats=CellStats(mean, std), hold=hold, **options)
    drifted = CellStats((mean + 0.004).to(device), (std + 0.004).to(device))  # within 0.01
    moved = choice.clone()
    moved[1, 2] = 7
    second = render_mosaic(tiles, moved, cell_stats=drifted, hold=hold, **options)
    fresh = render_mosaic(tiles, moved, cell_stats=drifted, **options)
    before, after, recoloured = (cell_blocks(x.cpu(), 6) for x in (first, second, fresh))
    assert torch.equal(after[:5], before[:5])
    assert torch.equal(after[5], recoloured[5]) and not torch.equal(after[5], before[5])
    assert not torch.equal(after[:5], recoloured[:5])  # the held cells really differ from fresh
