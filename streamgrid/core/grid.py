"""Tiles the kept frames into one JPEG, brightest first, row by row."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from .jpeg import jpeg_size as jpeg_size  # also here: where the grid's readers look

Image = npt.NDArray[np.uint8]

MIN_TILE, MAX_TILE = 16, 2000
MAX_CELLS = 100
# The largest grid made: a side under JPEG's 65,535 px with room to spare, and
# about 150 MB of pixels (three bytes each) while it is composed.
MAX_GRID_SIDE = 16384
MAX_GRID_PIXELS = 50_000_000


class GridTooLarge(ValueError):
    """The grid asked for is over MAX_GRID_SIDE or MAX_GRID_PIXELS: the
    client's to change, a 400 with this reason."""


@dataclass(frozen=True)
class GridGeometry:
    """``cols`` None means ceil(sqrt(K)): 3 for the default K of 9."""

    cols: int | None = None
    tile_width: int = 300
    tile_height: int = 300

    def validate(self) -> GridGeometry:
        if self.cols is not None and not 1 <= self.cols <= MAX_CELLS:
            raise ValueError(f"grid_cols must be between 1 and {MAX_CELLS}")
        for name, v in (("tile_width", self.tile_width), ("tile_height", self.tile_height)):
            if not MIN_TILE <= v <= MAX_TILE:
                raise ValueError(f"{name} must be between {MIN_TILE} and {MAX_TILE}")
        return self

    def layout(self, frames: int, k: int) -> tuple[int, int]:
        """(cols, rows) for ``frames`` tiles out of a top-K of ``k``.

        Fewer frames than K give a smaller grid: never wider than the frame count.
        """
        cols = self.cols or math.ceil(math.sqrt(k))
        cols = max(1, min(cols, frames))
        return cols, max(1, math.ceil(frames / cols))

    def size(self, frames: int, k: int) -> tuple[int, int]:
        """(width, height) in pixels of the grid of ``frames`` out of ``k``."""
        cols, rows = self.layout(frames, k)
        return cols * self.tile_width, rows * self.tile_height

    def check_size(self, frames: int, k: int) -> GridGeometry:
        """Raises GridTooLarge, with the reason, for a grid too large to make."""
        width, height = self.size(frames, k)
        if max(width, height) > MAX_GRID_SIDE:
            raise GridTooLarge(
                f"{width}x{height} px for {frames} frames: over {MAX_GRID_SIDE} px a side"
            )
        if width * height > MAX_GRID_PIXELS:
            raise GridTooLarge(
                f"{width}x{height} px for {frames} frames: over "
                f"{MAX_GRID_PIXELS // 1_000_000} megapixels"
            )
        return self

    def name(self, frames: int, k: int) -> str:
        cols, rows = self.layout(frames, k)
        return f"grid_{cols}x{rows}_{self.tile_width}x{self.tile_height}_n{frames}.jpg"


def fit_tile(image: Image, width: int, height: int) -> Image:
    """Scale to fit inside the tile keeping the aspect ratio; pad with black."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interpolation)
    tile = np.zeros((height, width, 3), dtype=np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    tile[y : y + nh, x : x + nw] = resized
    return tile


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


def encode_jpeg(image: Image, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf)


_REDUCED = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


def decode_jpeg(data: bytes, fit: tuple[int, int] | None = None) -> Image:
    """Decodes a JPEG; with ``fit`` (a tile's width, height), at the smallest
    1/2, 1/4 or 1/8 scale that still covers the tile: JPEG scales in the DCT
    domain, several times faster than a full decode and a resize."""
    flags = cv2.IMREAD_COLOR
    size = jpeg_size(data) if fit else None
    if fit and size:
        scale = min(fit[0] / size[0], fit[1] / size[1])
        flags = next((f for factor, f in _REDUCED if factor * scale <= 1), cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None:
        raise ValueError("not a decodable image")
    return np.asarray(image, dtype=np.uint8)
