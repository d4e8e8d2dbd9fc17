from __future__ import annotations

import numpy as np
import pytest

from streamgrid.core.brightness import (
    brightness_of_bgr,
    brightness_of_luma,
    luma_to_full_range,
    mean_of_plane,
)


@pytest.mark.parametrize(("y", "expected"), [(16, 0.0), (235, 255.0), (126, 128.082)])
def test_limited_range_luma_maps_to_full_scale(y: int, expected: float) -> None:
    assert luma_to_full_range(float(y), full_range=False) == pytest.approx(expected, abs=1e-3)


def test_limited_range_clips_below_black_and_above_white() -> None:
    assert luma_to_full_range(0.0, full_range=False) == 0.0
    assert luma_to_full_range(255.0, full_range=False) == 255.0


def test_full_range_luma_is_taken_as_is() -> None:
    plane = np.full((4, 6), 77, dtype=np.uint8)
    assert brightness_of_luma(plane, full_range=True) == 77.0


def test_mean_is_over_the_whole_frame() -> None:
    plane = np.zeros((10, 10), dtype=np.uint8)
    plane[:5] = 200
    assert brightness_of_luma(plane, full_range=True) == 100.0


def test_bgr_uses_bt601_weights() -> None:
    blue, green, red = (np.zeros((2, 2, 3), dtype=np.uint8) for _ in range(3))
    blue[..., 0], green[..., 1], red[..., 2] = 255, 255, 255
    assert brightness_of_bgr(blue) == pytest.approx(0.114 * 255, abs=1e-3)
    assert brightness_of_bgr(green) == pytest.approx(0.587 * 255, abs=1e-3)
    assert brightness_of_bgr(red) == pytest.approx(0.299 * 255, abs=1e-3)


def test_scores_are_rounded_to_three_decimals() -> None:
    plane = np.array([[1, 2, 2]], dtype=np.uint8)
    assert brightness_of_luma(plane, full_range=True) == 1.667


def test_the_mean_is_exact_over_a_padded_plane() -> None:
    """Decoders hand over planes wider than the picture (line padding): only the
    picture counts, and the sum is exact, not a float accumulation."""
    rng = np.random.default_rng(7)
    padded = rng.integers(0, 256, size=(721, 1344), dtype=np.uint8)
    picture = padded[:, :1281]
    exact = sum(int(v) for v in picture.ravel()) / picture.size
    assert mean_of_plane(picture) == exact
    assert mean_of_plane(np.full((2160, 3840), 255, np.uint8)) == 255.0
