"""The embedded runtime across restarts: of the server (kill -9 and SIGTERM)
and of a worker (kill -9). Each test runs its own `streamgrid serve` on its
own data directory, and a second one on the same directory after the first
is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from streamgrid.gateway.state import DB_NAME
from testbed.api import details, start, wait_for
from testbed.camera import Camera
from testbed.children import alive
from testbed.processes import wait_until
from testbed.server import Server, start_server

from ..conftest import store_of


def serve(work: Path, name: str, data: Path, **env: str) -> Server:
    return start_server(work, name, store_env={"STREAMGRID_STORE_URL": str(data)}, extra_env=env)


def end(server: Server, sig: signal.Signals) -> None:
    """The server alone gets the signal (not its process group: its workers
    are left to what a real kill or stop does to them)."""
    os.kill(server.process.pid, sig)
    assert server.process.process is not None
    server.process.process.wait(30)
    server.process.stop()  # closes its log


def events(server: Server, event: str, stream_id: str) -> list[dict[str, Any]]:
    found = []
    for line in server.log_text().splitlines():
        if f'"{event}"' in line and stream_id in line:
            data: dict[str, Any] = json.loads(line)
            if data.get("event") == event and data.get("stream_id") == stream_id:
                found.append(data)
    return found


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_restart_resumes_running_streams_and_keeps_stopped_ones(
    camera: Camera, tmp_path: Path, sig: signal.Signals
) -> None:
    data = tmp_path / "data"
    first = serve(tmp_path, "first", data)
    try:
        with first.client() as client:
            running = start(client, camera.url(), capture_interval=0.2)
            stopped = start(client, camera.url(), capture_interval=0.2)
            wait_for(client, running, lambda d: d["frames_captured"] >= 5, 30, "samples")
            wait_for(client, stopped, lambda d: d["frames_captured"] >= 3, 30, "samples")
            grid = client.post(f"/stop/{stopped}")
            assert grid.status_code == 200, grid.text
            before = details(client, running)
    finally:
        end(first, sig)
    shown, old_worker = before["frames_captured"], before["worker"]["pid"]
    assert old_worker is not None

    second = serve(tmp_path, "second", data)
    try:
        with second.client() as client:
            assert details(client, running)["frames_captured"] >= shown  # never lower
            wait_for(
                client,
                running,
                lambda d: d["state"] == "Active" and d["frames_captured"] >= shown + 5,
                30,
                "the running stream to capture again",
            )
            assert client.post(f"/status/{running}").json() == "Stream status: Active"
            listed = client.get("/list").json()["active_streams"]
            assert running in listed and stopped not in listed
            assert listed[running]["url"] == camera.url()
            assert client.post(f"/status/{stopped}").json() == "Stream status: Stopped"
            again = client.post(f"/stop/{stopped}")
            assert again.status_code == 200 and again.content == grid.content
            assert client.post(f"/stop/{running}").status_code == 200
        # The first server's worker did not outlive it (nor run beside the new one).
        assert not alive(old_worker)
        store = store_of(second)
        manifest = store.get_manifest(running)
        assert manifest is not None and manifest.frames_captured >= shown + 5
        seqs = [r.seq for r in store.list_frames(running)]
        assert len(seqs) == len(set(seqs))
    finally:
        second.process.stop()


def test_the_records_are_private_and_forget_nothing_of_a_stopped_stream(
    camera: Camera, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = serve(tmp_path, "first", data)
    url = camera.secure_url()
    try:
        with first.client() as client:
            stream_id = start(client, url, capture_interval=0.2)
            wait_for(client, stream_id, lambda d: d["frames_captured"] >= 2, 30, "samples")
            assert client.post(f"/stop/{stream_id}").status_code == 200
            stopped = details(client, stream_id)
    finally:
        end(first, signal.SIGKILL)
    assert stat.S_IMODE((data / DB_NAME).stat().st_mode) == 0o600
    second = serve(tmp_path, "second", data)
    try:
        with second.client() as client:
            after = details(client, stream_id)
        for key in ("state", "frames_captured", "started_at", "stopped_at", "url", "kept"):
            assert after[key] == stopped[key], key
        assert after["running_time"] == pytest.approx(stopped["running_time"], abs=0.01)
        assert camera.secure_url() not in second.log_text()
    finally:
        second.process.stop()


def test_a_stopped_streams_data_goes_after_the_retention_across_a_restart(
    camera: Camera, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    retention = 10.0
    env = {"STREAMGRID_STOPPED_RETENTION_SECONDS": str(retention)}
    first = serve(tmp_path, "first", data, **env)
    try:
        with first.client() as client:
            stream_id = start(client, camera.url(), capture_interval=0.2)
            wait_for(client, stream_id, lambda d: d["frames_captured"] >= 2, 30, "samples")
            assert client.post(f"/stop/{stream_id}").status_code == 200
            stopped_at = details(client, stream_id)["stopped_at"]
    finally:
        end(first, signal.SIGKILL)
    assert (data / stream_id).is_dir()

    second = serve(tmp_path, "second", data, **env)
    try:
        with second.client() as client:
            assert client.post(f"/status/{stream_id}").json() == "Stream status: Stopped"
            # No request needed: the server expires on its own clock.
            wait_until(lambda: not (data / stream_id).exists(), 30, "the data to go", step=0.2)
            assert time.time() >= stopped_at + retention
            gone = client.post(f"/status/{stream_id}")
            assert (gone.status_code, gone.text) == (404, f"Stream not found with id {stream_id}")
        # Read beside the server, which holds the directory's lock.
        with contextlib.closing(sqlite3.connect(f"file:{data / DB_NAME}?mode=ro", uri=True)) as db:
            assert db.execute("SELECT stream_id FROM streams").fetchall() == []
    finally:
        second.process.stop()


def test_kill_9_of_a_worker_never_takes_the_count_back(camera: Camera, tmp_path: Path) -> None:
    server = serve(tmp_path, "server", tmp_path / "data")
    try:
        with server.client() as client:
            stream_id = start(client, camera.url(), capture_interval=0.1)
            wait_for(client, stream_id, lambda d: d["frames_captured"] >= 40, 30, "40 samples")
            before = details(client, stream_id)
            shown, worker = before["frames_captured"], before["worker"]["pid"]
            os.kill(worker, signal.SIGKILL)
            counts: list[int] = []

            def respawned_and_counting() -> bool:
                now = details(client, stream_id)
                counts.append(now["frames_captured"])
                return now["worker"]["pid"] not in (None, worker) and counts[-1] >= shown + 10

            wait_until(respawned_and_counting, 30, "a new worker counting on", step=0.05)
            assert counts == sorted(counts) and counts[0] >= shown, counts
            assert client.post(f"/stop/{stream_id}").status_code == 200
        # The new worker itself started from the count, not from an older manifest.
        restored = events(server, "worker.restored", stream_id)
        assert restored and restored[-1]["frames_captured"] >= shown, restored
        store = store_of(server)
        manifest = store.get_manifest(stream_id)
        assert manifest is not None and manifest.frames_captured >= counts[-1]
        seqs = [r.seq for r in store.list_frames(stream_id)]
        assert len(seqs) == len(set(seqs))
    finally:
        server.process.stop()
