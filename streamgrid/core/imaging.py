"""JPEG in and out, and a picture scaled into a tile, with Pillow: what every
kept frame, grid and thumbnail goes through, in the capture worker and the
gateway alike (so a grid is the same bytes whoever composes it).

Pillow rather than OpenCV: it costs a process about 1.5 MB of private memory
where OpenCV with NumPy cost 13, and it is the same libjpeg-turbo with the
same defaults (4:2:0, baseline, standard tables): a picture encodes to the
bytes OpenCV wrote for it. No NumPy here: core/grid.py puts an array face on
these for the callers that hold arrays.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from .jpeg import jpeg_size

Picture = Image.Image
GRID_QUALITY = 90  # the grid's JPEG quality (libjpeg's 1-100 scale)
_REDUCTIONS = (8, 4, 2)  # the scales libjpeg decodes at in the DCT domain: 1/8, 1/4, 1/2


class _JpegFile(io.BytesIO):
    """Where a JPEG is written. Pillow chooses the writer by this name's
    extension and then loads that format's plugin alone; named by format, it
    loads five (0.4 MB of a capture pod's memory for nothing)."""

    name = "picture.jpg"


def encode(picture: Picture, quality: int = GRID_QUALITY) -> bytes:
    out = _JpegFile()
    picture.save(out, quality=quality)
    return out.getvalue()


def encode_rgb(data: Any, width: int, height: int, stride: int, quality: int) -> bytes:
    """A JPEG of packed RGB rows (``stride`` bytes apart) in any buffer, e.g. a
    decoded frame's plane. (Pillow copies them first; RGBX rows it would read
    in place, but FFmpeg's swscale got the last columns of a picture whose
    width is not a multiple of 16 wrong in its RGBX output.)"""
    picture = Image.frombuffer("RGB", (width, height), data, "raw", "RGB", stride, 1)
    return encode(picture, quality)


def reduction(data: bytes, fit: tuple[int, int]) -> int:
    """The smallest scale (1, 1/2, 1/4 or 1/8, as its divisor) at which the
    JPEG still covers a ``fit`` (width, height) tile."""
    size = jpeg_size(data)
    if not size or not size[0] or not size[1]:
        return 1
    scale = min(fit[0] / size[0], fit[1] / size[1])
    return next((factor for factor in _REDUCTIONS if factor * scale <= 1), 1)


def decode(data: bytes, fit: tuple[int, int] | None = None) -> Picture:
    """A JPEG as an RGB picture; with ``fit`` (a tile's width, height), decoded
    at the smallest 1/2, 1/4 or 1/8 scale that still covers the tile: JPEG
    scales in the DCT domain, several times faster than a full decode and a
    resize. ValueError when it is not a decodable JPEG."""
    try:
        picture = Image.open(io.BytesIO(data), formats=["JPEG"])
        factor = reduction(data, fit) if fit else 1
        width, height = picture.size
        if factor > 1 and width >= factor and height >= factor:
            picture.draft("RGB", (width // factor, height // factor))
        return picture.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a decodable image ({exc})") from None


def fitted(picture: Picture, width: int, height: int) -> tuple[Picture, tuple[int, int]]:
    """``picture`` scaled to fit inside width x height, its aspect ratio kept
    (an area average down, bilinear up), and where it sits centred there."""
    w, h = picture.size
    scale = min(width / w, height / h)
    size = max(1, round(w * scale)), max(1, round(h * scale))
    if size != (w, h):
        resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        picture = picture.resize(size, resample)
    return picture, ((width - size[0]) // 2, (height - size[1]) // 2)


def tile(picture: Picture, width: int, height: int) -> Picture:
    """``picture`` fitted into a width x height tile, padded with black."""
    scaled, at = fitted(picture, width, height)
    padded = Image.new("RGB", (width, height))
    padded.paste(scaled, at)
    return padded


def canvas(width: int, height: int) -> Picture:
    """A black picture to place tiles on."""
    return Image.new("RGB", (width, height))
