"""The grid of a stopped stream, made from the store and stored once made.

A store that fails while the grid is read is StoreUnavailable (a 503: stop
again later). A grid made but not stored is still returned: the stored copy
is only a cache of what the frames (safe in the store) give again.

In the cluster, the capture pod stores the stream's default grid at a
graceful stop (capture/worker.py, same composition, same name), so a stop in
the default geometry returns those bytes without composing again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from functools import partial
from typing import TypeVar

from ..core.grid import GridGeometry
from ..core.grid_store import compose_from_store
from ..core.logs import log_event
from ..core.stores.base import StoreError, store_error_text
from ..core.stores.frames import FrameStore
from ..core.topk import best
from .backend import GridFailed, NoFramesCaptured, StoreUnavailable

log = logging.getLogger("streamgrid.gateway")
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
