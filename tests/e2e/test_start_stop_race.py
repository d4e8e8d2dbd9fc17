"""Start racing stop on the embedded runtime: no orphan workers, ever.

A /stop that arrives before the supervisor has spawned the worker must still
leave no worker behind; the stream cap counts workers that may be alive; a
stop-all reaches streams started an instant before it. Workers are counted
among the server's own children (/proc), never by name system-wide.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.api import start
from testbed.camera import Camera
from testbed.children import capture_workers
from testbed.processes import wait_until
from testbed.server import Server, start_server

PAIRS = 24
CAP = 2


@pytest.fixture(scope="module")
def race_server(work_dir: Path) -> Iterator[Server]:
    srv = start_server(work_dir, "server-race", extra_env={"STREAMGRID_MAX_STREAMS": str(CAP)})
    yield srv
    srv.process.stop()


def test_start_stop_pairs_on_one_connection_leave_no_worker(
    race_server: Server, camera: Camera
) -> None:
    pid = race_server.process.pid
    with race_server.client() as client:  # one keep-alive connection
        ids: list[str] = []
        for _ in range(PAIRS):
            stream_id = start(client, camera.url(), capture_interval=0.2)
            stopped = client.post(f"/stop/{stream_id}")
            assert stopped.status_code == 200 or (
                (stopped.status_code, stopped.text) == (400, "No frames captured")
            )
            # The stop returned: its worker, if one was spawned, is gone.
            assert capture_workers(pid) == set(), f"pair {len(ids) + 1}"
            ids.append(stream_id)
        for stream_id in ids:
            assert client.post(f"/status/{stream_id}").json() == "Stream status: Stopped"
        assert not set(ids) & set(client.get("/list").json()["active_streams"])
    wait_until(lambda: not capture_workers(pid), 5, "no capture worker left", step=0.1)


def test_the_cap_counts_live_workers_and_stop_all_reaches_new_streams(
    race_server: Server, camera: Camera
) -> None:
    pid = race_server.process.pid
    with race_server.client() as client:
        for round_ in range(12):
            first = start(client, camera.url(), capture_interval=0.2)
            second = start(client, camera.url(), capture_interval=0.2)
            refused = client.post("/start", data={"rtsp_url": camera.url()})
            assert (refused.status_code, refused.text) == (
                429,
                f"Too many streams: the limit is {CAP}",
            )
            # Stop-all right after the starts: before their workers exist.
            results = client.post("/stop").json()["results"]
            assert results == {first: "Stopped", second: "Stopped"}, f"round {round_}"
            assert capture_workers(pid) == set(), f"round {round_}"
    wait_until(lambda: not capture_workers(pid), 5, "no capture worker left", step=0.1)
