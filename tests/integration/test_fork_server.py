"""Workers forked from the template process (gateway/forkserver.py), in a
LocalBackend in this process, on the real camera: they are this process's
children, recognisable as exec'd workers are, share the template's imports,
and outlive the template."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamgrid.core.models import StreamState
from streamgrid.gateway.forkserver import ForkServer
from streamgrid.gateway.local import LocalBackend
from streamgrid.gateway.requests import StartRequest
from streamgrid.gateway.settings import GatewaySettings
from streamgrid.gateway.supervisor import is_worker_of
from testbed.camera import Camera
from testbed.children import alive, capture_workers, fork_servers, memory_kb
from testbed.media import h264_args, make_clip, video_input
from testbed.mediamtx import MediaMtx
from testbed.processes import wait_until
from testbed.worker import dir_store


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    settings = GatewaySettings(store_url=str(tmp_path), stop_timeout_seconds=5.0)
    backend = LocalBackend(settings, dir_store(tmp_path))
    assert isinstance(backend.supervisor.spawner, ForkServer)  # the default
    yield backend
    backend.close()


def active_worker(backend: LocalBackend, stream_id: str, samples: int = 2) -> int:
    def counting() -> bool:
        info = backend.info(stream_id)
        return info.state == StreamState.ACTIVE and info.frames_captured >= samples

    wait_until(counting, 30, f"{stream_id} to capture")
    pid = backend.info(stream_id).details["worker"]["pid"]
    assert isinstance(pid, int)
    return pid


def test_a_forked_worker_is_our_child_named_as_an_execd_one_and_shares_the_imports(
    backend: LocalBackend, camera: Camera
) -> None:
    url = camera.secure_url()
    stream_id = backend.start(StartRequest(url, 0.2))
    worker = active_worker(backend, stream_id)
    (template,) = fork_servers(os.getpid())
    # What testbed/children.py, `ps` and the next server look for.
    assert capture_workers(os.getpid()) == {worker}
    assert is_worker_of(worker, stream_id) and not is_worker_of(template, stream_id)
    for pid in (worker, template):
        for name in ("cmdline", "environ"):  # the URL travelled over the socket only
            assert url.encode() not in Path(f"/proc/{pid}/{name}").read_bytes()
    # Copy-on-write: most of the worker's anonymous memory is the template's.
    # (An exec'd worker's is all its own: USS about its RssAnon.)
    memory = memory_kb(worker)
    assert memory["Uss"] < 0.6 * memory["RssAnon"], memory
    assert backend.stop(stream_id, None)[:2] == b"\xff\xd8"
    wait_until(lambda: not alive(worker), 10, "the worker to be reaped")


def test_a_killed_template_is_started_again_and_its_workers_run_on(
    backend: LocalBackend, camera: Camera
) -> None:
    spawner = backend.supervisor.spawner
    assert isinstance(spawner, ForkServer)
    first = backend.start(StartRequest(camera.url(), 0.2))
    first_worker = active_worker(backend, first)
    (template,) = fork_servers(os.getpid())
    os.kill(template, signal.SIGKILL)
    wait_until(lambda: not alive(template), 10, "the template to die")

    second = backend.start(StartRequest(camera.url(), 0.2))
    second_worker = active_worker(backend, second)
    assert spawner.starts == 2 and fork_servers(os.getpid()) not in (set(), {template})
    # The first stream's worker was not the template's child: it never noticed.
    count = backend.info(first).frames_captured
    wait_until(lambda: backend.info(first).frames_captured >= count + 3, 20, "more samples")
    assert backend.info(first).details["worker"]["pid"] == first_worker
    assert backend.info(first).details["worker"]["restarts"] == 0

    # A worker that dies is restarted from the new template.
    os.kill(second_worker, signal.SIGKILL)
    wait_until(
        lambda: backend.info(second).details["worker"]["pid"] not in (None, second_worker),
        20,
        "a new worker",
    )
    active_worker(backend, second, samples=backend.info(second).frames_captured + 2)
    assert backend.info(second).details["worker"]["restarts"] == 1


def test_a_worker_on_a_720p_camera_runs_no_thread_pool(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """Its threads are its main one, its capture loop and the loop's receive
    thread (capture/_rtp.c, stamping what comes while the loop decodes): one
    camera, no pool. (OpenCV's pool, on pictures this large, spun beside them:
    a thousand sched_yield calls a second per worker, thousands of runnable
    threads at 64 streams, samples lost waiting behind them.)"""
    clip = make_clip("h264-720p-gop25", ".mp4", video_input(1280, 720, 25, 4) + h264_args(gop=25))
    server = MediaMtx(tmp_path, "mediamtx-720p").start()
    try:
        server.publish("pub-720p", clip)
        stream_id = backend.start(StartRequest(server.url("pub-720p"), 0.5))
        worker = active_worker(backend, stream_id, samples=4)
        tasks = Path(f"/proc/{worker}/task")
        wait_until(lambda: len(list(tasks.iterdir())) <= 3, 5, "three threads, no pool")
        names = sorted((task / "comm").read_text().strip() for task in tasks.iterdir())
        assert "rtp-receive" in names, names
    finally:
        server.stop()
