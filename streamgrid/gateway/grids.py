"""The grid of a stopped stream, made from the store and stored once made."""

from __future__ import annotations

import logging

from ..core.grid import GridGeometry, compose_grid, decode_jpeg, encode_jpeg
from ..core.logs import log_event
from ..core.store import FrameStore
from ..core.topk import best
from .backend import GridFailed, NoFramesCaptured

log = logging.getLogger("streamgrid.gateway")


def grid_for_stream(store: FrameStore, stream_id: str, top_k: int, geometry: GridGeometry) -> bytes:
    records = best(store.list_frames(stream_id), top_k)
    if not records:
        raise NoFramesCaptured(stream_id)
    geometry.check_size(len(records), top_k)  # GridTooLarge: the client's, a 400
    name = geometry.name(len(records), top_k)

    cached = store.get_grid(stream_id, name)
    if cached is not None:
        return cached
    try:
        images = []
        for record in records:
            data = store.get_frame(stream_id, record)
            if data is None:
                raise GridFailed(f"frame {record.seq} vanished from the store")
            images.append(decode_jpeg(data, fit=(geometry.tile_width, geometry.tile_height)))
        jpeg = encode_jpeg(compose_grid(images, geometry, top_k))
    except (ValueError, GridFailed) as exc:
        log_event(log, "grid.failed", logging.ERROR, stream_id=stream_id, error=str(exc))
        raise GridFailed(str(exc)) from None
    store.put_grid(stream_id, name, jpeg)
    log_event(log, "grid.created", stream_id=stream_id, frames=len(records), name=name)
    return jpeg
