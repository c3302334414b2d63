"""Comparison and shape helpers shared by the kernel property tests."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

# Tails around a block size: 1, primes, and block - 1, block, block + 1 for the usual blocks.
SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17)


def sizes_around(block: int) -> st.SearchStrategy[int]:
    """Sizes that exercise tails: 1, small primes and ``block - 1 .. block + 1`` (at least 1)."""
    candidates = {1, *SMALL_PRIMES, max(1, block - 1), block, block + 1, 2 * block + 1}
    return st.sampled_from(sorted(candidates))


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    atol: float,
    rtol: float = 0.0,
    name: str = "output",
) -> None:
    """``torch.testing``-style check that reports what a kernel engineer needs on failure.

    Reports the mismatch count, the first bad index, the max abs error and the relative RMS;
    NaN anywhere in ``actual`` (an unwritten, poisoned element) is a mismatch.
    """
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    actual64 = actual.detach().to("cpu", torch.float64)
    expected64 = expected.detach().to("cpu", torch.float64)
    error = (actual64 - expected64).abs()
    bad = ~(error <= atol + rtol * expected64.abs())  # NaN compares False, so it counts as bad
    if bad.any():
        first = tuple(int(i) for i in bad.nonzero()[0])
        rms = (error.nan_to_num(float("inf")).square().mean().sqrt()) / (
            expected64.square().mean().sqrt() + 1e-30
        )
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {bad.numel()} elements differ "
            f"(atol={atol}, rtol={rtol}); first at {first}: {actual64[first].item()} vs "
            f"{expected64[first].item()}; max abs error {error.nan_to_num(float('inf')).max()}; "
            f"relative RMS {rms.item():.3g}"
        )
