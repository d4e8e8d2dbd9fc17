"""Limits of the embedded runtime: how many streams, how long a stopped one is kept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.api import start, wait_for
from testbed.camera import Camera
from testbed.server import Server, start_server

from ..conftest import store_of


@pytest.fixture(scope="module")
def tight_server(work_dir: Path) -> Iterator[Server]:
    srv = start_server(
        work_dir,
        "server-tight",
        extra_env={
            "STREAMGRID_MAX_STREAMS": "1",
            "STREAMGRID_STOPPED_RETENTION_SECONDS": "2",
        },
    )
    yield srv
    srv.process.stop()


def test_too_many_streams_is_a_429_with_a_reason(tight_server: Server, camera: Camera) -> None:
    with tight_server.client() as client:
        first = start(client, camera.url())
        refused = client.post("/start", data={"rtsp_url": camera.url()})
        assert (refused.status_code, refused.text) == (429, "Too many streams: the limit is 1")
        client.post(f"/stop/{first}")
        # A stopped stream no longer counts.
        second = start(client, camera.url())
        client.post(f"/stop/{second}")


def test_a_stopped_stream_is_forgotten_after_the_retention(
    tight_server: Server, camera: Camera
) -> None:
    store = store_of(tight_server)
    with tight_server.client() as client:
        stream_id = start(client, camera.url(), capture_interval=0.5)
        wait_for(client, stream_id, lambda d: d["frames_captured"] >= 2, 20, "samples")
        grid = client.post(f"/stop/{stream_id}")
        assert grid.status_code == 200
        assert store.list_frames(stream_id)
        assert client.post(f"/stop/{stream_id}").content == grid.content  # kept for now
        time.sleep(2.5)
        gone = client.post(f"/status/{stream_id}")
        assert (gone.status_code, gone.text) == (404, f"Stream not found with id {stream_id}")
        assert client.post(f"/stop/{stream_id}").status_code == 404
    assert store.list_frames(stream_id) == []
    assert store.get_manifest(stream_id) is None
