"""``MosaicConfig``: every setting of a mosaic, with named presets.

Plain data: this module imports nothing heavy (torch only inside ``torch_device``), so the
command line checks its options before torch loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# The assignment solvers (mosaic.assign): "auto" picks by problem size.
METHODS = ("auto", "exact", "windows", "auction")

READABLE_TILE = 32
"""Pixels on a tile's shorter side below which a photo no longer reads as one: what
``tile_size="auto"`` draws at least (at 16 px, the default cell, photos are colour blots)."""

AUTO_MIN_DISTANCE = 1
"""What ``min_distance="auto"`` asks for: no tile beside itself, diagonals included."""

AUTO_SPACING_MIN_TILES = 2 * (2 * AUTO_MIN_DISTANCE + 1) ** 2
"""Tiles a pool needs for ``min_distance="auto"`` to turn spacing on: twice the tiles of a
neighbourhood, so a clash has tiles to move to (with fewer, spacing is left off)."""

MAX_ADAPTIVE_LEVELS = 6
"""Most ``adaptive`` levels: the largest cells are at most 64 times the smallest a side."""

SPLIT_THRESHOLD = 0.002
"""``split_threshold``'s default detail energy (``mosaic.adaptive``)."""


class ConfigError(ValueError):
    """A setting is out of range or inconsistent with another one."""


@dataclass(frozen=True)
class TemporalSettings:
    """What temporal coherence trades.

    Attributes:
        switch_bonus: bonus of a cell's incumbent tile, as a multiple of the previous frame's mean
            per-cell cost. 0 solves every frame independently (most stable per-frame fidelity,
            maximal flicker); about 1 keeps tiles through noise at a few percent of fidelity.
        change_threshold: Oklab distance (root mean square over the cell's ``s x s`` block means)
            between a cell's content and its anchor beyond which the cell may change tile. Lower
            follows the content more closely (more changes), higher holds tiles longer. A
            just-noticeable Oklab difference is about 0.02.
        scene_cut: fraction of cells whose content moves past ``change_threshold`` from one frame
            to the next that counts as a scene cut and resets every incumbent.
        follow_motion: move the tiles with the camera (pan, zoom, shake; ``mosaic.temporal``),
            estimated from the descriptors; off, every tile stays in its cell.
        colour_hold: with colour transfer, a cell that keeps its tile keeps its colour too while
            its source's Oklab mean and spread stay within this of the values it was coloured
            with (``mosaic.colour.ColourHold``): 0.005 is a quarter of a just-noticeable
            difference, so the colour never visibly lags, and noise in the source no longer
            makes the tiles shimmer; it also spares most cells' colour conversion. 0 holds only
            exactly unchanged cells.
    """

    switch_bonus: float = 1.0
    change_threshold: float = 0.06
    scene_cut: float = 0.6
    colour_hold: float = 0.005
    follow_motion: bool = True

    def __post_init__(self) -> None:
        # Written so that NaN fails too.
        if not self.switch_bonus >= 0:
            raise ConfigError(f"switch_bonus must be >= 0, got {self.switch_bonus}")
        if not self.change_threshold > 0:
            raise ConfigError(f"change_threshold must be > 0, got {self.change_threshold}")
        if not 0 < self.scene_cut <= 1:
            raise ConfigError(f"scene_cut must be in (0, 1], got {self.scene_cut}")
        if not self.colour_hold >= 0:
            raise ConfigError(f"colour_hold must be >= 0, got {self.colour_hold}")


@dataclass(frozen=True)
class MosaicConfig:
    """How a frame becomes a mosaic.

    Attributes:
        cell: a grid cell in source pixels: a side (square cells) or ``(width, height)`` (for
            4:3 or 3:2 photos kept whole). The frame is cut into ``ceil(H / height) x
            ceil(W / width)`` cells (the last row and column are padded by repeating the edge,
            then cropped away again in the output).
        grid: ``s``, the descriptor grid: each cell and tile is described by its ``s x s`` Oklab
            block means (``D = 3 s^2``). 1 matches mean colours only; 2 or 3 also match
            structure (a bright top, a dark left edge). The cell's sides and the pool's tiles'
            must be multiples of it.
        tile_size: a tile in the output, in pixels. ``"auto"`` (the default) draws tiles at
            least ``READABLE_TILE`` pixels on their shorter side, the cell scaled by a whole
            factor (cell 16: tiles of 32, the output twice the input's size), so the photos
            read as photos; ``None`` draws them at the cell's size (the output has the input's
            size); an int is the tile's width (its height follows the cell's aspect); a
            ``(width, height)`` pair must have the cell's aspect.
        reuse: how often one tile may appear per frame: ``0`` unlimited (every cell takes its
            nearest tile), ``1`` each tile at most once, ``k`` at most k times, ``"auto"`` the
            smallest cap the pool allows.
        fair: fair use: every tile is used before any tile repeats, each ``floor(cells /
            tiles)`` or ``ceil(cells / tiles)`` times a frame (with more tiles than cells, each
            at most once). Overrides ``reuse``.
        min_distance: the same tile never appears within this many cells of itself
            (Chebyshev distance); 0 turns the rule off. ``"auto"`` (the default):
            ``AUTO_MIN_DISTANCE`` (no tile beside itself, diagonals included) when the pool
            has at least ``AUTO_SPACING_MIN_TILES`` tiles, else 0.
        color: colour transfer toward each cell's colours in Oklab, 0 (tiles untouched) to 1
            (each tile takes its cell's mean and spread).
        blend: opacity of the source laid over the mosaic, 0 (none) to 1 (the source alone).
        adaptive: adaptive cells for a still image (``mosaic.adaptive``): 0 (the default)
            cuts it into equal cells; ``k`` (1 to ``MAX_ADAPTIVE_LEVELS``) starts from cells
            ``2**k`` times ``cell`` a side and halves them, a quadtree, where their detail is
            above ``split_threshold``, down to ``cell``. Tiles are drawn at their cell's size.
        split_threshold: the detail energy above which an adaptive cell is split: the mean
            squared step of luma (0 to 1) between neighbouring pixels inside the cell. Lower
            splits more (smaller cells, more of them), 0 splits every cell that is not flat.
        saturation: chroma of the colour-transfer target, relative to the source (1 keeps it;
            1.3 makes colours punchier). Only has an effect with ``color > 0``.
        lightness_weight: weight of Oklab L against a and b in the matching distance.
        method: assignment solver: ``"auto"`` picks by problem size and device
            (``mosaic.assign.resolved_method``), ``"exact"`` solves the
            global problem, ``"windows"`` the scalable batched solver, ``"auction"`` the
            sync-free auction with a certified gap (prices carried from frame to frame).
        seed: seed of every random choice (augmentation order, ties), for reproducible output.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        temporal: how videos keep tiles from frame to frame (``TemporalSettings``).
    """

    cell: int | tuple[int, int] = 16
    grid: int = 2
    tile_size: int | tuple[int, int] | str | None = "auto"
    reuse: int | str = "auto"
    fair: bool = False
    min_distance: int | str = "auto"
    color: float = 0.6
    blend: float = 0.0
    adaptive: int = 0
    split_threshold: float = SPLIT_THRESHOLD
    saturation: float = 1.0
    lightness_weight: float = 1.0
    method: str = "auto"
    seed: int = 0
    device: str = "auto"
    temporal: TemporalSettings = field(default_factory=TemporalSettings)
    # Presets are named bundles of the fields above; see PRESETS.
    preset: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.cell, tuple):
            _check_pair(self.cell, "cell")
        else:
            _check_int(self.cell, "cell", 1, hint="(or a (width, height) pair)")
        _check_int(self.grid, "grid", 1)
        cell_h, cell_w = self.cell_shape
        if cell_h % self.grid or cell_w % self.grid:
            raise ConfigError(
                f"cell {_size_text(self.cell)} is not a multiple of grid {self.grid}: "
                "grid 1 (mean colour only) allows it"
            )
        if self.tile_size not in ("auto", None):
            self._check_tile_size()
        if self.reuse != "auto":
            _check_int(self.reuse, "reuse", 0, hint='(0 = unlimited, or "auto")')
        if not isinstance(self.fair, bool):
            raise ConfigError(f"fair must be True or False, got {self.fair!r}")
        if self.min_distance != "auto":
            _check_int(self.min_distance, "min_distance", 0, hint='(or "auto")')
        for name, value, high in (("color", self.color, 1.0), ("blend", self.blend, 1.0)):
            if not _is_number(value) or not 0.0 <= float(value) <= high:
                raise ConfigError(f"{name} must be between 0 and {high:g}, got {value!r}")
        _check_int(self.adaptive, "adaptive", 0, hint="(0 = equal cells)")
        if self.adaptive > MAX_ADAPTIVE_LEVELS:
            raise ConfigError(
                f"adaptive must be at most {MAX_ADAPTIVE_LEVELS} levels (cells up to "
                f"{2**MAX_ADAPTIVE_LEVELS} times the smallest), got {self.adaptive}"
            )
        if not _is_number(self.split_threshold) or not float(self.split_threshold) >= 0.0:
            raise ConfigError(
                f"split_threshold must be a number >= 0, got {self.split_threshold!r}"
            )
        if not _is_number(self.saturation) or not 0.0 <= float(self.saturation) <= 3.0:
            raise ConfigError(f"saturation must be between 0 and 3, got {self.saturation!r}")
        if not _is_number(self.lightness_weight) or not float(self.lightness_weight) > 0.0:
            raise ConfigError(f"lightness_weight must be > 0, got {self.lightness_weight!r}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")

    def _check_tile_size(self) -> None:
        cell_h, cell_w = self.cell_shape
        if isinstance(self.tile_size, tuple):
            _check_pair(self.tile_size, "tile_size")
            width, height = self.tile_size
        else:
            _check_int(self.tile_size, "tile_size", 1, hint='(or "auto")')
            width, height = self.tile_size, self.tile_size * cell_h // cell_w
        if width * cell_h != height * cell_w:
            raise ConfigError(
                f"tile_size {_size_text(self.tile_size)} does not have the aspect of the cells "
                f"({cell_w}:{cell_h}); give a width whose height is whole, or a matching WxH"
            )

    @property
    def cell_shape(self) -> tuple[int, int]:
        """``(height, width)`` of a cell in source pixels."""
        if isinstance(self.cell, tuple):
            return self.cell[1], self.cell[0]
        return self.cell, self.cell

    @property
    def tile_shape(self) -> tuple[int, int]:
        """``(height, width)`` of a tile in the output, ``tile_size`` resolved (see there)."""
        cell_h, cell_w = self.cell_shape
        if self.tile_size is None:
            return cell_h, cell_w
        if self.tile_size == "auto":
            factor = max(1, -(-READABLE_TILE // min(cell_h, cell_w)))
            return cell_h * factor, cell_w * factor
        if isinstance(self.tile_size, tuple):
            return self.tile_size[1], self.tile_size[0]
        return self.tile_size * cell_h // cell_w, self.tile_size

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H_out, W_out)`` of the mosaic of an ``H x W`` picture."""
        (cell_h, cell_w), (tile_h, tile_w) = self.cell_shape, self.tile_shape
        return max(1, height * tile_h // cell_h), max(1, width * tile_w // cell_w)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> MosaicConfig:
        """The preset ``name`` with some fields overridden."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides, "preset": name})

    def replace(self, **changes: Any) -> MosaicConfig:
        return dataclasses.replace(self, **changes)

    def torch_device(self) -> torch.device:
        """The processing device this config asks for, resolved (``"auto"`` -> CUDA if present),
        with its index (``cuda:0``, as the device of a tensor made there reads, so the two
        compare equal)."""
        import torch

        name = self.device
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise ConfigError(f"unknown device {self.device!r}") from error
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but no CUDA GPU is available")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return device


# Named looks. Pictures of each are in the README.
PRESETS: dict[str, dict[str, Any]] = {
    # Reads as the source from a distance: structure-aware matching, colour transfer strong
    # enough that every tile takes its cell's colour while still showing its photo.
    "faithful": {"grid": 2, "color": 0.7, "saturation": 1.0, "reuse": "auto"},
    # Bold: nearly full colour transfer toward a more saturated version of the source.
    "vivid": {"grid": 2, "color": 0.85, "saturation": 1.35, "reuse": "auto"},
    # The photos as they are: no colour transfer, matched on structure, fair use: every photo
    # shows before any repeats (each at most once when the pool has more photos than cells).
    "photo": {"grid": 2, "color": 0.0, "reuse": "auto", "fair": True},
}


def as_config(config: MosaicConfig | str | None) -> MosaicConfig:
    """What a ``config`` argument stands for: a ``MosaicConfig`` as it is, a preset by name
    (``"vivid"``: ``MosaicConfig.from_preset("vivid")``), or ``None`` for the defaults."""
    if config is None:
        return MosaicConfig()
    if isinstance(config, str):
        return MosaicConfig.from_preset(config)
    if not isinstance(config, MosaicConfig):
        raise TypeError(f"config must be a MosaicConfig or a preset name, got {config!r}")
    return config


def parse_size(text: str) -> int | tuple[int, int]:
    """``"16"`` -> 16, ``"16x12"`` -> ``(16, 12)`` (width by height); ``ValueError`` else."""
    width, separator, height = text.lower().partition("x")
    try:
        return (int(width), int(height)) if separator else int(width)
    except ValueError:
        raise ValueError(f"expected N or WIDTHxHEIGHT, got {text!r}") from None


def _size_text(size: int | tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}" if isinstance(size, tuple) else str(size)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_pair(value: tuple, name: str) -> None:
    if len(value) != 2 or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value
    ):
        raise ConfigError(f"{name} must be a (width, height) pair of integers >= 1, got {value!r}")


def _check_int(value: Any, name: str, minimum: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{name} must be an integer >= {minimum}{' ' + hint if hint else ''}, got {value!r}"
        )
