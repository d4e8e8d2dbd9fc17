"""Tiles the kept frames into one JPEG, brightest first, row by row."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from .geometry import GridGeometry
from .jpeg import jpeg_size as jpeg_size  # also here: where the grid's readers look

Image = npt.NDArray[np.uint8]


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
