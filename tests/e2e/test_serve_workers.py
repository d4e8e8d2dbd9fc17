"""`streamgrid serve`'s workers, forked from its template process: SIGTERM of
the server ends each gracefully, and a killed template is replaced."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from testbed.api import details, start, wait_for
from testbed.camera import Camera
from testbed.children import alive, capture_workers, fork_servers
from testbed.processes import wait_until
from testbed.server import start_server

STREAMS = 3


def test_sigterm_of_serve_stops_every_worker_gracefully(camera: Camera, tmp_path: Path) -> None:
    server = start_server(tmp_path, "server", extra_env={"STREAMGRID_LOG_LEVEL": "INFO"})
    pid = server.process.pid
    try:
        with server.client() as client:
            ids = [start(client, camera.url(), capture_interval=0.2) for _ in range(STREAMS)]
            for stream_id in ids:
                wait_for(client, stream_id, lambda d: d["frames_captured"] >= 2, 30, "samples")
            workers = {details(client, s)["worker"]["pid"] for s in ids}
        assert capture_workers(pid) == workers and len(workers) == STREAMS
        templates = fork_servers(pid)
        assert len(templates) == 1
        os.kill(pid, signal.SIGTERM)
        assert server.process.process is not None
        server.process.process.wait(30)  # (uvicorn ends by raising the signal again)
        for worker in workers | templates:
            wait_until(lambda w=worker: not alive(w), 10, f"{worker} to be gone")  # type: ignore[misc]
        finished = [
            json.loads(line)
            for line in server.log_text().splitlines()
            if '"worker.finished"' in line
        ]
        # Each worker flushed its frames and its final manifest, and said so.
        assert sorted(f["stream_id"] for f in finished) == sorted(ids)
        assert {f["state"] for f in finished} == {"Stopped"}
        assert '"worker.killed"' not in server.log_text()
    finally:
        server.process.stop()


def test_a_killed_template_does_not_stop_serving(camera: Camera, tmp_path: Path) -> None:
    server = start_server(tmp_path, "server")
    pid = server.process.pid
    try:
        with server.client() as client:
            first = start(client, camera.url(), capture_interval=0.2)
            wait_for(client, first, lambda d: d["frames_captured"] >= 2, 30, "samples")
            (template,) = fork_servers(pid)
            os.kill(template, signal.SIGKILL)
            wait_until(lambda: not alive(template), 10, "the template to die")
            second = start(client, camera.url(), capture_interval=0.2)
            wait_for(client, second, lambda d: d["frames_captured"] >= 2, 30, "samples")
            assert fork_servers(pid) not in (set(), {template})
            assert details(client, first)["worker"]["restarts"] == 0
            for stream_id in (first, second):
                assert client.post(f"/stop/{stream_id}").status_code == 200
        assert '"forkserver.died"' in server.log_text()
    finally:
        server.process.stop()
