"""A stream's grid composed from its stored frames: one code path for the
capture worker (the default grid, at a graceful stop) and the gateway (any
geometry, at /stop), so both make the same bytes under the same name.

Frames are decoded and placed one at a time: memory is the canvas plus one
decoded frame, whatever K is (the pod's memory limit is small).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .grid import GridGeometry, decode_jpeg, encode_jpeg, fit_tile
from .models import FrameRecord

# Reads one frame's JPEG; None when it is not (or no longer) in the store.
FrameReader = Callable[[FrameRecord], bytes | None]


class FrameMissing(ValueError):
    """A record's frame is not in the store (deleted meanwhile)."""


@dataclass(frozen=True)
class StoredGrid:
    """A grid written to the store, as ``status.grid`` describes it."""

    name: str  # the object's name under <stream>/grids/, as GridGeometry.name gives it
    url: str  # where it is: the store's URL, then <stream>/grids/<name>
    width: int
    height: int
    frames: int
    composed_at: float  # epoch seconds


def compose_from_store(
    read_frame: FrameReader, records: Sequence[FrameRecord], geometry: GridGeometry, top_k: int
) -> bytes:
    """The JPEG grid of ``records`` (brightest first, as ``best`` orders them).
    Raises FrameMissing, or ValueError for a frame that does not decode."""
    if not records:
        raise ValueError("no frames to tile")
    cols, rows = geometry.layout(len(records), top_k)
    tw, th = geometry.tile_width, geometry.tile_height
    canvas = np.zeros((rows * th, cols * tw, 3), dtype=np.uint8)
    for i, record in enumerate(records):
        data = read_frame(record)
        if data is None:
            raise FrameMissing(f"frame {record.seq} vanished from the store")
        r, c = divmod(i, cols)
        tile = fit_tile(decode_jpeg(data, fit=(tw, th)), tw, th)
        canvas[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = tile
    return encode_jpeg(canvas)
