"""The gateway's side of store faults: a grid that cannot be read from the
store is StoreUnavailable (a 503), one that cannot be cached is still
returned; the cluster backend holds a stop only while a running pod reports
a store error."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from streamgrid.core.geometry import GridGeometry
from streamgrid.core.grid import encode_jpeg
from streamgrid.core.grid_store import grid_for_stream
from streamgrid.core.models import FrameRecord
from streamgrid.core.stores.base import ObjectStore, StoreError
from streamgrid.core.stores.frames import FrameStore
from streamgrid.gateway.backend import StoreUnavailable
from streamgrid.gateway.kube import failing_store


class FailingObjects(ObjectStore):
    """Objects in a dict; reads or writes refused on demand, as a dead disk does."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.refuse_reads = self.refuse_writes = False

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if self.refuse_writes:
            raise StoreError(os.strerror(errno.ENOSPC))
        self.objects[key] = data

    def get(self, key: str) -> bytes | None:
        if self.refuse_reads:
            raise StoreError(os.strerror(errno.EIO))
        return self.objects.get(key)

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def list(self, prefix: str) -> Iterator[str]:
        yield from sorted(k for k in self.objects if k.startswith(prefix))


def stored_frames(levels: list[int]) -> tuple[FrameStore, FailingObjects]:
    objects = FailingObjects()
    store = FrameStore(objects)
    for seq, level in enumerate(levels):
        image = np.full((48, 64, 3), level, dtype=np.uint8)
        store.put_frame("s", FrameRecord(seq, float(level), 1795000000.0 + seq), encode_jpeg(image))
    return store, objects


def test_a_store_that_cannot_be_read_is_unavailable_with_the_reason() -> None:
    store, objects = stored_frames([100, 200])
    objects.refuse_reads = True
    with pytest.raises(StoreUnavailable, match=r"^Input/output error$"):
        grid_for_stream(store, "s", 9, GridGeometry(tile_width=32, tile_height=32))


def test_a_grid_that_cannot_be_cached_is_still_returned() -> None:
    store, objects = stored_frames([100, 200])
    objects.refuse_writes = True
    jpeg = grid_for_stream(store, "s", 9, GridGeometry(tile_width=32, tile_height=32))
    assert jpeg[:2] == b"\xff\xd8"
    assert not [k for k in objects.objects if "/grids/" in k]
    objects.refuse_writes = False  # a later stop makes and caches it
    assert grid_for_stream(store, "s", 9, GridGeometry(tile_width=32, tile_height=32)) == jpeg
    assert [k for k in objects.objects if "/grids/" in k]


def stream(state: str, store_error: str, desired: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": "s"},
        "spec": {"state": desired},
        "status": {"state": state, "storeError": store_error},
    }


@pytest.mark.parametrize(
    ("obj", "held"),
    [
        (stream("Active", "No space left on device"), "No space left on device"),
        (stream("Reconnecting", "No space left on device"), "No space left on device"),
        (stream("Active", ""), ""),
        (stream("Stopped", "No space left on device"), ""),  # the pod's stale last word
        (stream("Failed", "No space left on device"), ""),
        (stream("Stopping", "No space left on device", desired="Stopped"), ""),
        ({"metadata": {"name": "s"}, "spec": {}}, ""),  # no status yet
    ],
)
def test_the_cluster_holds_a_stop_only_while_a_running_pod_reports_a_store_error(
    obj: dict[str, Any], held: str
) -> None:
    assert failing_store(obj) == held
