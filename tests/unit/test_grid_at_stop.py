"""The capture worker's grid at a graceful stop (cluster: STREAMGRID_GRID_AT_STOP):
composed from the stored top K in the stream's own geometry, stored under the
name the gateway looks for, and reported in the final progress (status.grid).
A real directory store; pictures are real decoded-frame objects."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from streamgrid.capture.decoding import Picture
from streamgrid.capture.kube_progress import status_of
from streamgrid.capture.progress import Progress
from streamgrid.capture.settings import CaptureSettings
from streamgrid.capture.worker import CaptureWorker
from streamgrid.core.geometry import GridGeometry
from streamgrid.core.grid import compose_grid, decode_jpeg, encode_jpeg, jpeg_size
from streamgrid.core.grid_store import StoredGrid, compose_from_store, grid_for_stream
from streamgrid.core.models import StreamState
from streamgrid.core.stores.directory import DirectoryObjectStore
from streamgrid.core.stores.frames import FrameStore
from streamgrid.operator.podspec import capture_pod
from streamgrid.operator.settings import OperatorSettings
from testbed.worker import RecordingProgress


def picture(level: int) -> Picture:
    gray = np.full((48, 64), level, dtype=np.uint8)
    return Picture(av.VideoFrame.from_ndarray(gray, format="gray"))


def worker_with_frames(
    root: Path, levels: list[int], top_k: int = 4, **settings: Any
) -> tuple[CaptureWorker, FrameStore, RecordingProgress]:
    store = FrameStore(DirectoryObjectStore(root))
    progress = RecordingProgress()
    values: dict[str, Any] = {
        "stream_id": "cam",
        "source_url": "rtsp://127.0.0.1:9/x",
        "top_k": top_k,
        "progress": "none",
        "store_url": str(root),
        "grid_at_stop": True,
    }
    worker = CaptureWorker(CaptureSettings(**(values | settings)), store, progress)
    worker.state = StreamState.ACTIVE
    for level in levels:
        worker.sample(picture(level))
    return worker, store, progress


def test_a_graceful_stop_stores_the_default_grid_the_gateway_returns_as_is(
    tmp_path: Path,
) -> None:
    worker, store, progress = worker_with_frames(
        tmp_path, [10, 200, 50, 180, 90, 220], grid_columns=2, grid_tile_width=40
    )
    worker.finish(StreamState.STOPPED)

    geometry = GridGeometry(2, 40, 300)
    name = geometry.name(4, 4)  # what the gateway computes for the stream's own geometry
    assert store.list_grids("cam") == [name]
    stored = store.get_grid("cam", name)
    assert stored is not None and jpeg_size(stored) == (80, 600)
    grid = progress.last().grid
    assert grid is not None and progress.last().state is StreamState.STOPPED
    assert (grid.name, grid.width, grid.height, grid.frames) == (name, 80, 600, 4)
    assert grid.url == f"{tmp_path}/cam/grids/{name}"

    # The gateway composes the same bytes from the same frames...
    store.delete_grid("cam", name)
    assert grid_for_stream(store, "cam", 4, geometry, geometry) == stored
    # ...and serves a stored grid as it is, without composing it again.
    store.put_grid("cam", name, b"the pod's grid")
    assert grid_for_stream(store, "cam", 4, geometry, geometry) == b"the pod's grid"


def test_grids_stored_before_are_dropped_at_stop(tmp_path: Path) -> None:
    worker, store, _ = worker_with_frames(tmp_path, [10, 20, 30])
    store.put_grid("cam", "grid_1x1_300x300_n1.jpg", b"stale: fewer frames then")
    worker.finish(StreamState.STOPPED)
    assert store.list_grids("cam") == [GridGeometry().name(3, 4)]


def test_no_grid_when_failed_off_or_not_all_frames_stored(tmp_path: Path) -> None:
    failed, store, progress = worker_with_frames(tmp_path / "failed", [10, 20])
    failed.finish(StreamState.FAILED)
    assert store.list_grids("cam") == [] and progress.last().grid is None

    off, store, progress = worker_with_frames(tmp_path / "off", [10, 20], grid_at_stop=False)
    off.finish(StreamState.STOPPED)
    assert store.list_grids("cam") == [] and progress.last().grid is None

    held, store, progress = worker_with_frames(tmp_path / "held", [10, 20])
    record = held.topk.records()[0]
    held.store.delete_frame("cam", record)  # as if the store had refused it...
    held.unsaved[record] = b"held in memory"
    held._retry_unsaved = lambda: None  # type: ignore[method-assign]  # ...and still does
    held.finish(StreamState.STOPPED)
    assert store.list_grids("cam") == [] and progress.last().grid is None


def test_status_grid_is_sent_at_stop_and_cleared_when_a_pod_starts() -> None:
    grid = StoredGrid("grid_3x3_300x300_n9.jpg", "s3://b/p/ns/cam/grids/g.jpg", 900, 900, 9, 0.0)
    stopped = Progress(StreamState.STOPPED, 20, 9, None, grid=grid)
    assert status_of(stopped)["grid"] == {
        "url": "s3://b/p/ns/cam/grids/g.jpg",
        "name": "grid_3x3_300x300_n9.jpg",
        "width": 900,
        "height": 900,
        "frames": 9,
        "composedAt": "1970-01-01T00:00:00Z",
    }
    assert status_of(Progress(StreamState.CONNECTING, 20, 9, None))["grid"] is None
    assert "grid" not in status_of(Progress(StreamState.ACTIVE, 21, 9, None))


def test_composing_from_the_store_makes_what_compose_grid_makes(tmp_path: Path) -> None:
    """One frame decoded at a time gives the bytes the all-at-once composition gave."""
    worker, store, _ = worker_with_frames(tmp_path, [30, 120, 60, 240, 200], top_k=5)
    records = worker.topk.records()
    geometry = GridGeometry(None, 50, 40)
    images = [decode_jpeg(store.get_frame("cam", r) or b"", fit=(50, 40)) for r in records]
    expected = encode_jpeg(compose_grid(images, geometry, 5))
    assert compose_from_store(partial(store.get_frame, "cam"), records, geometry, 5) == expected


@pytest.mark.parametrize(
    ("grid", "geometry"),
    [
        (None, GridGeometry()),
        ({"columns": 4, "tileWidth": 64, "tileHeight": 48}, GridGeometry(4, 64, 48)),
    ],
)
def test_the_pod_gets_the_streams_own_geometry(
    grid: dict[str, int] | None, geometry: GridGeometry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From spec.grid, through the pod's env, to the geometry the worker
    composes in: the one the gateway calls the stream's own."""
    spec: dict[str, Any] = {"source": {"url": "rtsp://cam/x"}}
    if grid is not None:
        spec["grid"] = grid
    stream = {"metadata": {"name": "cam", "namespace": "ns", "uid": "u"}, "spec": spec}
    pod = capture_pod(stream, OperatorSettings(store_url="s3://bucket/frames"))
    for item in pod["spec"]["containers"][0]["env"]:
        if "value" in item:
            monkeypatch.setenv(item["name"], item["value"])
    settings = CaptureSettings()  # from the environment, as in the pod
    assert settings.grid_at_stop is True
    assert settings.grid_geometry() == geometry
