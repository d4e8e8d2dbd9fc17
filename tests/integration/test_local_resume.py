"""LocalBackend resuming from its records, in-process, with a real worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from streamgrid.core.models import StreamState
from streamgrid.gateway.local import LocalBackend
from streamgrid.gateway.requests import StartRequest
from streamgrid.gateway.settings import GatewaySettings
from streamgrid.gateway.state import StreamRecords
from testbed.camera import Camera
from testbed.processes import wait_until
from testbed.worker import dir_store

STREAM_ID = "0123456789abcdef"


def test_a_resumed_stream_waits_out_the_previous_servers_worker(
    camera: Camera, tmp_path: Path
) -> None:
    """A killed server's worker that does not exit (here: it ignores SIGTERM)
    is killed after the stop timeout, and only then does a new worker start:
    two workers never write one stream."""
    records = StreamRecords(tmp_path)
    records.insert(STREAM_ID, camera.url(), StartRequest(camera.url(), 0.2), 1_800_000_000.0)
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
            "streamgrid.capture",  # what the check looks for, with the stream's id in its env
        ],
        env={**os.environ, "STREAMGRID_STREAM_ID": STREAM_ID},
    )
    records.update(STREAM_ID, state=StreamState.ACTIVE, frames_captured=30, worker_pid=stubborn.pid)
    settings = GatewaySettings(store_url=str(tmp_path), stop_timeout_seconds=1.0)
    backend = LocalBackend(settings, dir_store(tmp_path), records)
    try:
        assert backend.info(STREAM_ID).details["worker"]["pid"] is None  # not while it runs
        stubborn.wait(10)
        assert stubborn.returncode == -signal.SIGKILL
        wait_until(lambda: backend.info(STREAM_ID).state == StreamState.ACTIVE, 20, "a new worker")
        info = backend.info(STREAM_ID)
        assert info.details["worker"]["pid"] not in (None, stubborn.pid)
        assert info.frames_captured >= 30  # the recorded count is the floor
        wait_until(lambda: backend.info(STREAM_ID).frames_captured >= 32, 20, "samples")
        assert min(r.seq for r in dir_store(tmp_path).list_frames(STREAM_ID)) >= 30
        assert backend.stop(STREAM_ID, None)[:2] == b"\xff\xd8"  # a JPEG
    finally:
        backend.close()
        if stubborn.poll() is None:
            stubborn.kill()
            stubborn.wait()
