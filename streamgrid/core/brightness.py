"""Brightness = mean luma (ITU-R BT.601 Y) of the whole frame on a 0-255 scale.

Decoders hand us Y directly, so no colour conversion is needed. H.264/H.265
cameras almost always send limited ("TV") range, Y in 16..235; we map that to
full range so a white frame scores 255 and a black one 0 whichever range the
camera uses, i.e. the same number as 0.299 R + 0.587 G + 0.114 B of the decoded
RGB picture. Scores are rounded to 3 decimals; ties go to the earlier frame.

The worker sums a decoded plane's bytes itself (capture/decoding.py); the
functions over arrays here take NumPy arrays without importing NumPy, so
that importing this module costs a capture pod nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

LIMITED_BLACK, LIMITED_SPAN = 16.0, 219.0


def round_brightness(value: float) -> float:
    return round(float(value), 3)


def luma_to_full_range(mean_y: float, full_range: bool) -> float:
    if full_range:
        return round_brightness(min(255.0, max(0.0, mean_y)))
    scaled = (mean_y - LIMITED_BLACK) * 255.0 / LIMITED_SPAN
    return round_brightness(min(255.0, max(0.0, scaled)))


def mean_of_plane(plane: npt.NDArray[np.uint8]) -> float:
    """Mean of a 2-D uint8 plane, from an integer sum: exact below 2**53 (any
    frame), as a float accumulation is not."""
    return int(plane.sum(dtype="uint64")) / plane.size


def brightness_of_luma(plane: npt.NDArray[np.uint8], full_range: bool) -> float:
    return luma_to_full_range(mean_of_plane(plane), full_range)


def brightness_of_bgr(image: npt.NDArray[np.uint8]) -> float:
    """BT.601 luma of a BGR picture (OpenCV's channel order)."""
    b, g, r = (image[..., i].astype("float64").mean() for i in range(3))
    return round_brightness(0.114 * b + 0.587 * g + 0.299 * r)
