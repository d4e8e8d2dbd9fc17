"""A stream's grid composed from its stored frames: one code path for the
capture worker (the default grid, at a graceful stop), the gateway (any
geometry, at /stop) and ``kubectl streamgrid grid``, so all make the same
bytes under the same name.

Frames are decoded and placed one at a time: memory is the canvas plus one
decoded frame, whatever K is (the pod's memory limit is small). Pillow does
it (core/imaging.py), in the pod and in the gateway alike.

A stopped stream's grid (grid_for_stream) is read from the store when made
before, else composed and stored. A store that fails while the grid is read
is StoreUnavailable (the gateway's 503: stop again later). A grid made but
not stored is still returned: the stored copy is only a cache of what the
frames (safe in the store) give again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from . import imaging
from .geometry import GridGeometry
from .logs import log_event
from .models import FrameRecord
from .stores.base import StoreError, store_error_text
from .stores.frames import FrameStore
from .topk import best

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
    canvas = imaging.canvas(cols * tw, rows * th)
    for i, record in enumerate(records):
        data = read_frame(record)
        if data is None:
            raise FrameMissing(f"frame {record.seq} vanished from the store")
        r, c = divmod(i, cols)
        picture, (x, y) = imaging.fitted(imaging.decode(data, fit=(tw, th)), tw, th)
        canvas.paste(picture, (c * tw + x, r * th + y))
    return imaging.encode(canvas)


class NoFramesCaptured(RuntimeError):
    pass


class GridFailed(RuntimeError):
    pass


class StoreUnavailable(RuntimeError):
    """The store refuses writes (or reads) now; the message says why. /stop
    answers 503 and leaves the worker running: it holds the frames the store
    refused, and the user can stop again once the store is back."""


log = logging.getLogger("streamgrid.grids")
# Grids kept per stream: every geometry asked for at stop is stored, so without
# a bound a client looping over geometries fills the store.
MAX_GRIDS_PER_STREAM = 8
T = TypeVar("T")
# Told of each grid served: seconds spent composing it, or None for a stored
# one. Set by the /stop route for its request (gateway/metrics.py); context
# variables follow run_in_threadpool, so this code needs no app.
GRID_OBSERVER: ContextVar[Callable[[float | None], None] | None] = ContextVar(
    "grid_observer", default=None
)


def grid_served(composed_seconds: float | None) -> None:
    observer = GRID_OBSERVER.get()
    if observer is not None:
        observer(composed_seconds)


def _read(call: Callable[[], T]) -> T:
    try:
        return call()
    except StoreError as exc:
        raise StoreUnavailable(store_error_text(exc)) from exc


def grid_for_stream(
    store: FrameStore,
    stream_id: str,
    top_k: int,
    geometry: GridGeometry,
    default: GridGeometry | None = None,
) -> bytes:
    """The stream's grid in ``geometry``, from the store when made before.
    ``default`` is the stream's own geometry: its grid (what a plain repeated
    stop returns) is the last one evicted to keep the bound."""
    records = best(_read(lambda: store.list_frames(stream_id)), top_k)
    if not records:
        raise NoFramesCaptured(stream_id)
    geometry.check_size(len(records), top_k)  # GridTooLarge: the client's, a 400
    name = geometry.name(len(records), top_k)

    cached = _read(lambda: store.get_grid(stream_id, name))
    if cached is not None:
        grid_served(None)
        return cached
    started = time.perf_counter()
    try:
        # The same composition as the capture pod's grid at stop: same bytes.
        jpeg = compose_from_store(
            lambda record: _read(partial(store.get_frame, stream_id, record)),
            records,
            geometry,
            top_k,
        )
        grid_served(time.perf_counter() - started)
    except ValueError as exc:  # FrameMissing, or a frame that does not decode
        log_event(log, "grid.failed", logging.ERROR, stream_id=stream_id, error=str(exc))
        raise GridFailed(str(exc)) from None
    keep = {name} | ({default.name(len(records), top_k)} if default is not None else set())
    try:
        _make_room(store, stream_id, keep)
        store.put_grid(stream_id, name, jpeg)
    except StoreError as exc:  # the cache only; the grid itself is right
        log_event(
            log,
            "grid.store_failed",
            logging.WARNING,
            stream_id=stream_id,
            error=store_error_text(exc),
        )
    log_event(log, "grid.created", stream_id=stream_id, frames=len(records), name=name)
    return jpeg


def _make_room(store: FrameStore, stream_id: str, keep: set[str]) -> None:
    """Deletes stored grids, those not in ``keep`` first, until one more fits
    under MAX_GRIDS_PER_STREAM."""
    stored = store.list_grids(stream_id)
    # The store keeps no age: evict the others in listing order, ``keep`` last.
    evictable = [n for n in stored if n not in keep] + [n for n in stored if n in keep]
    for name in evictable[: max(0, len(stored) - MAX_GRIDS_PER_STREAM + 1)]:
        store.delete_grid(stream_id, name)
