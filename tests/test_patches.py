"""``adapters.patch_stream`` and ``PatchClipDataset``: the most detailed patches of a clip.

The selection is checked against an independent oracle on frames whose patches have known
energies: each patch a checkerboard of grey 0 and ``a`` (every difference ``a / 255``, energy
``2 (a / 255)**2``) or flat (energy 0), with many equal energies so that ties decide; the
oracle sorts by (-energy, frame, row, column) in Python. Frames at the input size are not
resized, so uint8 patches must be the frames' own pixels. Then resizing (short side, long side
cut centred), a video through each backend, determinism, one-line errors, the dataset with
and without worker processes, and the CUDA paths where there is CUDA.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adapters import (
    ClipFrames,
    PatchClip,
    PatchClipDataset,
    PatchSpec,
    SourceError,
    patch_stream,
    probe,
    uniform_indices,
)
from adapters.patches import select_patches
from kernels.block_energy import block_energy_reference
from tests.adapters.media import make_clip
from tests.processes import child_env
from tests.syncs import count_syncs

PATCH = 8
ROWS, COLS = 5, 7  # the folder's frames: 40 x 56 pixels
FRAMES = 5
AMPLITUDES = (0, 40, 80, 120)  # 0: a flat patch of a random grey


def checkerboard_frames(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames ``(FRAMES, ROWS * PATCH, COLS * PATCH, 3)`` and each patch's amplitude
    ``(FRAMES, ROWS, COLS)``."""
    generator = np.random.default_rng(seed)
    amplitudes = generator.choice(AMPLITUDES, size=(FRAMES, ROWS, COLS))
    board = np.indices((PATCH, PATCH)).sum(axis=0) % 2
    frames = np.zeros((FRAMES, ROWS * PATCH, COLS * PATCH, 3), dtype=np.uint8)
    for (frame, row, col), amplitude in np.ndenumerate(amplitudes):
        grey = board * amplitude if amplitude else np.full_like(board, generator.integers(256))
        window = np.s_[frame, row * PATCH : (row + 1) * PATCH, col * PATCH : (col + 1) * PATCH]
        frames[window] = grey[:, :, None]
    return frames, amplitudes


def write_folder(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir()
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{index + 1}.png")
    return folder


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("patches")


@pytest.fixture(scope="module")
def boards(media: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A folder of checkerboard frames, the frames and their patches' amplitudes."""
    frames, amplitudes = checkerboard_frames(seed=1)
    return write_folder(media / "boards", frames), frames, amplitudes


@pytest.fixture(scope="module")
def clip(media: Path) -> Path:
    """testsrc, 64 x 48, 25 frames, in MP4."""
    return make_clip(media / "clip.mp4", audio=None)


def oracle_selection(amplitudes: np.ndarray, k_keep: int) -> list[tuple[int, int, int]]:
    """The ``k_keep`` patches of highest energy, ties to the earlier, in (frame, row, col)
    order."""
    patches = [(int(a), position) for position, a in np.ndenumerate(amplitudes)]
    strongest = sorted(patches, key=lambda patch: (-patch[0], patch[1]))[:k_keep]
    return sorted(position for _, position in strongest)


def assert_consistent(clip: PatchClip, k_keep: int, device: str) -> None:
    """What every patch clip satisfies: shapes, device, (frame, row, column) order without
    repeats, and scores that are the energies of the patches themselves."""
    assert clip.patches.shape == (k_keep, 3, PATCH, PATCH)
    assert clip.positions.shape == (k_keep, 3) and clip.positions.dtype == torch.int64
    assert clip.scores.shape == (k_keep,) and clip.scores.dtype == torch.float32
    for tensor in (clip.patches, clip.positions, clip.scores, clip.frame_indices):
        assert tensor.device.type == torch.device(device).type
    keys = [tuple(position) for position in clip.positions.tolist()]
    assert keys == sorted(set(keys))
    patches = clip.patches.float() / (255.0 if clip.patches.dtype == torch.uint8 else 1.0)
    # The reference: on a CPU, the interpreter would take a program per patch.
    energies = block_energy_reference(patches, PATCH)
    torch.testing.assert_close(energies, clip.scores[:, None, None])


# --------------------------------------------------------------------------- selection


@pytest.mark.parametrize("k_keep", [1, 40, 100, FRAMES * ROWS * COLS])
def test_keeps_the_most_detailed_patches_ties_to_the_earlier(boards, k_keep):
    folder, frames, amplitudes = boards
    clip = patch_stream(
        folder, sequence_length=FRAMES, input_size=ROWS * PATCH, patch_size=PATCH,
        k_keep=k_keep, process_device="cpu", decode_device="cpu", dtype=torch.uint8,
    )  # fmt: skip
    expected = oracle_selection(amplitudes, k_keep)
    assert [tuple(p) for p in clip.positions.tolist()] == expected
    assert clip.grid == (ROWS, COLS)
    assert clip.frame_indices.tolist() == list(range(FRAMES))
    for patch, (frame, row, col), score in zip(clip.patches, expected, clip.scores, strict=True):
        pixels = frames[frame, row * PATCH : (row + 1) * PATCH, col * PATCH : (col + 1) * PATCH]
        np.testing.assert_array_equal(patch.permute(1, 2, 0).numpy(), pixels)
        energy = 2 * (amplitudes[frame, row, col] / 255.0) ** 2
        assert score.item() == pytest.approx(energy, abs=1e-6)
    assert_consistent(clip, k_keep, "cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_float_patches_are_the_codes_scaled_to_unit_range(boards, dtype):
    folder, _, _ = boards
    options = {"sequence_length": FRAMES, "input_size": 40, "patch_size": PATCH, "k_keep": 60}
    codes = patch_stream(folder, **options, process_device="cpu", dtype=torch.uint8)
    values = patch_stream(folder, **options, process_device="cpu", dtype=dtype)
    assert values.patches.dtype == dtype
    assert torch.equal(values.positions, codes.positions)
    expected = (codes.patches.double() / 255.0).to(dtype)
    torch.testing.assert_close(values.patches, expected, rtol=0, atol=0)


def test_frames_are_resized_by_the_short_side_and_cut_to_whole_patches(media):
    """Landscape, portrait, and a long side that is not a multiple of the patch once resized
    (100 x 64 -> 50 x 32, cut to 48 centred); flat frames stay flat, with no energy."""
    for (width, height), grid in {(96, 64): (4, 6), (64, 96): (6, 4), (100, 64): (4, 6)}.items():
        folder = media / f"flat_{width}x{height}"
        flat = np.full((2, height, width, 3), 77, dtype=np.uint8)
        clip = patch_stream(
            write_folder(folder, flat), sequence_length=2, input_size=32, patch_size=PATCH,
            k_keep=2 * grid[0] * grid[1], process_device="cpu", dtype=torch.uint8,
        )  # fmt: skip
        assert clip.grid == grid
        assert (clip.patches == 77).all()
        assert (clip.scores == 0).all()


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_a_video_gives_the_same_clip_every_time(clip, backend):
    options = {"sequence_length": 6, "input_size": 32, "patch_size": PATCH, "k_keep": 50}
    first = patch_stream(clip, **options, process_device="cpu", backend=backend)
    again = patch_stream(clip, **options, process_device="cpu", backend=backend)
    for a, b in zip(first[:4], again[:4], strict=True):
        assert torch.equal(a, b)
    assert first.frame_indices.tolist() == uniform_indices(25, 6)
    assert first.grid == (4, 5)  # 64 x 48 -> 43 x 32, cut to 40 x 32
    assert first.patches.min() >= 0 and first.patches.max() <= 1
    assert_consistent(first, 50, "cpu")


def test_selection_never_waits_for_the_device(boards, reference_path):
    """Energies and selection are device work of fixed shapes: no value read back, no shape
    that depends on the data (so a GPU pipeline never stalls on them)."""
    _, frames, _ = boards
    clip = ClipFrames(torch.from_numpy(frames).permute(0, 3, 1, 2), torch.arange(FRAMES))
    spec = PatchSpec.checked(FRAMES, 40, PATCH, 50, torch.float16)
    with count_syncs() as syncs:
        selected = select_patches(clip, spec, torch.device("cpu"))
    assert not syncs, f"host syncs: {dict(syncs)}"
    assert selected.patches.shape == (50, 3, PATCH, PATCH)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"k_keep": 36}, ValueError, r"k_keep 36 is more than the 35 patches of .*boards's clip"),
        ({"input_size": 36}, ValueError, "input_size 36 is not a multiple of patch_size 8"),
        ({"patch_size": 0}, ValueError, "patch_size must be a positive int"),
        ({"sequence_length": 2.0}, ValueError, "sequence_length must be a positive int"),
        ({"k_keep": True}, ValueError, "k_keep must be a positive int"),
        ({"dtype": torch.int32}, TypeError, "dtype must be one of uint8, float16"),
        ({"decode_device": "gpu"}, ValueError, "decode_device must be auto, cpu, cuda or cuda:N"),
        ({"process_device": "meta"}, ValueError, "process_device must be auto, cpu, cuda"),
    ],
)
def test_bad_arguments_raise_one_line(boards, options, error, message):
    folder, _, _ = boards
    arguments = {"sequence_length": 1, "input_size": 40, "patch_size": PATCH, "k_keep": 10}
    arguments |= {"process_device": "cpu", **options}
    with pytest.raises(error, match=message) as raised:
        patch_stream(folder, **arguments)
    assert "\n" not in str(raised.value)


def test_a_missing_file_is_a_source_error(media):
    with pytest.raises(SourceError, match="no such file"):
        patch_stream(media / "nothing.mp4", sequence_length=1, input_size=8, patch_size=8, k_keep=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_says_so(boards):
    folder, _, _ = boards
    with pytest.raises(ValueError, match="CUDA is not available"):
        patch_stream(
            folder, sequence_length=1, input_size=40, patch_size=PATCH, k_keep=1,
            process_device="cuda",
        )  # fmt: skip


# --------------------------------------------------------------------------- devices

NEEDS_CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="the cuda decode and process paths need a CUDA device"
)


@NEEDS_CUDA
@pytest.mark.cuda
@pytest.mark.parametrize(
    ("decode_device", "process_device"),
    [("cpu", "cuda"), ("cuda", "cpu"), ("cuda", "cuda"), ("cuda:0", "cuda:0"), ("auto", "auto")],
)
def test_cuda_paths_select_what_the_cpu_selects(boards, clip, decode_device, process_device):
    """On the folder (decoded by Pillow, no resize) every path gives the CPU's patches exactly;
    on the video (NVDEC where torchcodec has it, resized on the GPU) a consistent clip."""
    folder, _, amplitudes = boards
    options = {"sequence_length": FRAMES, "input_size": 40, "patch_size": PATCH, "k_keep": 70}
    devices = {"decode_device": decode_device, "process_device": process_device}
    on_cuda = patch_stream(folder, **options, **devices, dtype=torch.uint8)
    on_cpu = patch_stream(folder, **options, process_device="cpu", dtype=torch.uint8)
    assert [tuple(p) for p in on_cuda.positions.tolist()] == oracle_selection(amplitudes, 70)
    assert torch.equal(on_cuda.patches.cpu(), on_cpu.patches)
    expected_device = "cuda" if process_device != "cpu" else "cpu"
    assert_consistent(on_cuda, 70, expected_device)
    video = patch_stream(
        clip, sequence_length=6, input_size=32, patch_size=PATCH, k_keep=50, **devices
    )
    assert_consistent(video, 50, expected_device)


# --------------------------------------------------------------------------- many videos


@pytest.fixture(scope="module")
def videos(media: Path, boards, clip) -> list[Path]:
    second, _ = checkerboard_frames(seed=2)
    return [boards[0], clip, write_folder(media / "boards2", second)]


DATASET_OPTIONS = {"sequence_length": FRAMES, "input_size": 32, "patch_size": PATCH, "k_keep": 60}


@pytest.mark.parametrize("workers", [0, 2])
def test_dataset_gives_each_videos_patch_stream(videos, workers):
    dataset = PatchClipDataset(videos, **DATASET_OPTIONS, process_device="cpu")
    loader = dataset.loader(workers=workers)
    assert len(loader) == len(dataset) == 3
    clips = list(loader)
    assert len(clips) == 3
    for path, clip in zip(videos, clips, strict=True):
        alone = patch_stream(path, **DATASET_OPTIONS, process_device="cpu", decode_device="cpu")
        for a, b in zip(clip[:4], alone[:4], strict=True):
            assert torch.equal(a, b)
        assert clip.grid == alone.grid
    assert torch.equal(dataset[1].patches, clips[1].patches)


def test_dataset_checks_every_video_when_made(videos, media):
    with pytest.raises(SourceError, match="no such file"):
        PatchClipDataset([videos[0], media / "missing.mp4"], **DATASET_OPTIONS)
    too_many = {**DATASET_OPTIONS, "k_keep": 101}  # each: 5 frames of 4 x 5 patches
    with pytest.raises(ValueError, match=r"k_keep 101 is more than the 100 patches of .*clip\.mp4"):
        PatchClipDataset(videos[1:], **too_many, process_device="cpu")
    assert probe(videos[1]).num_frames == 25


def test_importing_adapters_does_not_load_kernels():
    """``adapters -> kernels`` is one lazy arrow: only a patch name loads ``kernels``."""
    code = (
        "import sys, adapters; adapters.open_source; assert 'kernels' not in sys.modules; "
        "adapters.patch_stream; assert 'kernels' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], env=child_env(), check=True, timeout=120)
