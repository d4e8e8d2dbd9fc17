"""Tiles the kept frames into one JPEG, brightest first, row by row: the
array face (NumPy, BGR as OpenCV ordered it) of core/imaging.py, for callers
that hold pictures as arrays (the dashboard, tests, benchmarks). The same
pixels, scaled the same way, as the grid composed from a store
(core/grid_store.py), which uses core/imaging.py directly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage

from . import imaging
from .geometry import GridGeometry
from .jpeg import jpeg_size as jpeg_size  # also here: where the grid's readers look

Image = npt.NDArray[np.uint8]


def to_picture(image: Image) -> imaging.Picture:
    """A BGR (or grey) array as an RGB (or L) picture."""
    if image.ndim == 2:
        return PILImage.fromarray(np.ascontiguousarray(image), "L")
    return PILImage.fromarray(np.ascontiguousarray(image[..., ::-1]), "RGB")


def to_array(picture: imaging.Picture) -> Image:
    """An RGB picture as a BGR array."""
    rgb = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])


def fit_tile(image: Image, width: int, height: int) -> Image:
    """Scale to fit inside the tile keeping the aspect ratio; pad with black."""
    return to_array(imaging.tile(to_picture(image).convert("RGB"), width, height))


def scaled(image: Image, width: int, height: int) -> Image:
    """Resized to exactly width x height (an area average down, bilinear up)."""
    picture = to_picture(image).convert("RGB")
    shrink = width < picture.width or height < picture.height
    resample = PILImage.Resampling.BOX if shrink else PILImage.Resampling.BILINEAR
    return to_array(picture.resize((width, height), resample))


def compose_grid(images: Sequence[Image], geometry: GridGeometry, k: int) -> Image:
    """Images must already be in rank order (brightest first)."""
    if not images:
        raise ValueError("no images to tile")
    cols, rows = geometry.layout(len(images), k)
    tw, th = geometry.tile_width, geometry.tile_height
    canvas = np.zeros((rows * th, cols * tw, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = fit_tile(image, tw, th)
    return canvas


def encode_jpeg(image: Image, quality: int = imaging.GRID_QUALITY) -> bytes:
    return imaging.encode(to_picture(image), quality)


def decode_jpeg(data: bytes, fit: tuple[int, int] | None = None) -> Image:
    """Decodes a JPEG (BGR); with ``fit`` (a tile's width, height), at the
    smallest 1/2, 1/4 or 1/8 scale that still covers the tile: JPEG scales in
    the DCT domain, several times faster than a full decode and a resize."""
    return to_array(imaging.decode(data, fit))
