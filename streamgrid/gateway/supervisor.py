"""A stream's worker, for its whole life: the embedded runtime's part of the
operator. A thread per stream spawns the worker, reads its progress lines,
restarts a worker that died unexpectedly (core/restarts.py's policy, the
operator's too) and leaves one that failed for good alone; a stop ends the
worker gracefully (SIGTERM: it flushes and exits 0), then by force.

Spawning and stopping are race-free: a worker is spawned only under its
stream's ``spawn_lock`` after checking ``stopping``, and ``end_worker`` sets
``stopping`` under the same lock before it signals whatever process exists,
so a stop that overtakes the spawn leaves no orphan.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

from ..core.crd import WorkerExit
from ..core.logs import log_event
from ..core.models import StreamState
from ..core.restarts import permanent_exit
from ..core.urls import mask_secrets
from ..core.worker_metrics import WorkerMetrics
from .local_stream import LocalStream
from .settings import GatewaySettings
from .state import Counts, RecordWriter
from .workers import Spawner, WorkerProcess

log = logging.getLogger("streamgrid.gateway")


class Supervisor:
    def __init__(self, settings: GatewaySettings, writer: RecordWriter, spawner: Spawner) -> None:
        self.settings = settings
        self.writer = writer
        self.spawner = spawner

    def start(self, stream: LocalStream) -> None:
        """The stream's supervisor thread; its first worker comes from it."""
        stream.supervisor = threading.Thread(
            target=self._supervise,
            args=(stream,),
            name=f"supervise-{stream.stream_id}",
            daemon=True,
        )
        stream.supervisor.start()

    def end_worker(self, stream: LocalStream) -> None:
        """Make sure no worker runs for the stream, now or later."""
        with stream.spawn_lock:
            # Under the lock the supervisor spawns with: after this, either a
            # process is in stream.process, or none will ever be spawned.
            stream.stopping.set()
            process = stream.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.settings.stop_timeout_seconds)
            except subprocess.TimeoutExpired:
                log_event(log, "worker.killed", logging.WARNING, stream_id=stream.stream_id)
                process.kill()
                process.wait()
        supervisor = stream.supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            # It may be waiting out a previous server's worker (bounded by the
            # stop timeout); otherwise it ends as soon as the pipe closes.
            supervisor.join(self.settings.stop_timeout_seconds + 5.0)
            if supervisor.is_alive():
                log_event(log, "supervisor.stuck", logging.WARNING, stream_id=stream.stream_id)

    def fail(self, stream: LocalStream, reason: str) -> None:
        stream.state, stream.reason = StreamState.FAILED, reason
        self.writer.write(
            stream.stream_id,
            state=stream.state,
            reason=reason,
            restarts=stream.restarts,
            frames_captured=stream.frames_captured,
            worker_pid=None,
        )
        log_event(log, "stream.failed", logging.ERROR, stream_id=stream.stream_id, reason=reason)

    def on_progress(self, stream: LocalStream, line: str) -> None:
        """One line of the worker's stdout: its progress, if it is one."""
        try:
            data = json.loads(line)
            state = StreamState(data["state"])
        except (ValueError, KeyError, TypeError):
            return  # not a progress line
        before = stream.state
        if stream.state != StreamState.STOPPED and not (
            stream.stopping.is_set() and state == StreamState.STOPPED
        ):
            stream.state = state
        stream.frames_captured = max(stream.frames_captured, int(data.get("frames_captured", 0)))
        stream.kept = int(data.get("kept", 0))
        stream.last_frame_at = data.get("last_frame_at") or stream.last_frame_at
        stream.reason = mask_secrets(str(data.get("reason", "")), stream.url_secrets)
        stream.codec = str(data.get("codec", "")) or stream.codec
        stream.unsaved = int(data.get("unsaved", 0))
        stream.store_error = mask_secrets(str(data.get("store_error", "")), stream.url_secrets)
        if "metrics" in data:
            with contextlib.suppress(ValueError):  # a malformed snapshot: keep the last one
                stream.worker_numbers = (
                    stream.worker_numbers[0],
                    WorkerMetrics.from_json(data["metrics"]),
                )
        if stream.state == StreamState.ACTIVE:
            stream.exits_in_a_row = 0  # a healthy run ends a crash loop (core/restarts.py)
        if stream.state != before:
            self.writer.write(
                stream.stream_id,
                state=stream.state,
                reason=stream.reason,
                codec=stream.codec,
                frames_captured=stream.frames_captured,
                kept=stream.kept,
                last_frame_at=stream.last_frame_at,
            )
        elif self.writer.count_due(stream.stream_id):
            counts = Counts(stream.frames_captured, stream.kept, stream.last_frame_at)
            self.writer.write_counts([(stream.stream_id, counts)])

    # -- the loop ------------------------------------------------------------
    def _supervise(self, stream: LocalStream) -> None:
        policy, rng = self.settings.restart_policy(), random.Random()
        if stream.previous_pid is not None:
            self._await_previous_worker(stream, stream.previous_pid)
        while True:
            with stream.spawn_lock:
                if stream.stopping.is_set():
                    return  # a stop came first: no worker, ever
                try:
                    process: WorkerProcess | None = self.spawner.spawn(
                        worker_env(self.settings, stream)
                    )
                except OSError as exc:  # EMFILE, ENOMEM: a retry with backoff, not a dead stream
                    process, why = None, f"cannot start a worker: {exc.strerror or exc}"
                stream.process = process
            if process is not None:
                code = self._run_worker(stream, process)
                if stream.stopping.is_set() or code == WorkerExit.STOPPED:
                    return
                if (permanent := permanent_exit(code)) is not None:  # no restart can mend it
                    self.fail(stream, stream.reason or permanent)
                    return
                why = f"worker exited with code {code}"
            stream.restarts += 1
            stream.exits_in_a_row += 1
            if policy.gives_up(stream.exits_in_a_row):
                self.fail(stream, f"{why}; {stream.exits_in_a_row} times in a row, giving up")
                return
            stream.state = StreamState.RECONNECTING
            stream.reason = f"{why}; restarting"
            self.writer.write(
                stream.stream_id, state=stream.state, reason=stream.reason, restarts=stream.restarts
            )
            log_event(
                log,
                "worker.exited",
                logging.WARNING,
                stream_id=stream.stream_id,
                reason=why,
                restarts=stream.restarts,
            )
            stream.stopping.wait(policy.delay(stream.exits_in_a_row, rng))

    def _run_worker(self, stream: LocalStream, process: WorkerProcess) -> int:
        """Follow a spawned worker's progress until it exits; its exit code."""
        self.writer.write(stream.stream_id, worker_pid=process.pid, restarts=stream.restarts)
        log_event(
            log,
            "worker.spawned",
            stream_id=stream.stream_id,
            pid=process.pid,
            restarts=stream.restarts,
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                self.on_progress(stream, line)
            return process.wait()
        finally:  # its last numbers join those of the workers before it
            stream.worker_numbers = (stream.worker_metrics(), None)

    def _await_previous_worker(self, stream: LocalStream, pid: int) -> None:
        """A killed server's workers get SIGTERM (PR_SET_PDEATHSIG) and flush;
        the new worker starts after the old one is gone, so that two never
        write the same stream (or reuse a sequence number)."""
        if not is_worker_of(pid, stream.stream_id):
            return
        log_event(log, "worker.previous_running", stream_id=stream.stream_id, pid=pid)
        deadline = time.monotonic() + self.settings.stop_timeout_seconds
        while is_worker_of(pid, stream.stream_id):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                log_event(
                    log, "worker.killed", logging.WARNING, stream_id=stream.stream_id, pid=pid
                )
                deadline = float("inf")
            time.sleep(0.05)


def worker_env(settings: GatewaySettings, stream: LocalStream) -> dict[str, str]:
    """The worker's whole environment: the server's, and the stream's settings.
    The URL travels here (readable only by our user), never on a command line
    where `ps` would show it."""
    s, r = settings, stream.request
    env = dict(os.environ)
    env.update(
        STREAMGRID_STREAM_ID=stream.stream_id,
        STREAMGRID_SOURCE_URL=r.rtsp_url,
        STREAMGRID_CAPTURE_INTERVAL=repr(r.capture_interval),
        STREAMGRID_TOP_K=str(r.top_k),
        STREAMGRID_RTSP_TRANSPORT=r.rtsp_transport,
        STREAMGRID_TLS_VERIFY=str(r.tls_verify).lower(),
        STREAMGRID_STORE_URL=s.store_url,
        STREAMGRID_S3_REGION=s.s3_region,
        STREAMGRID_LOG_LEVEL=s.worker_log_level,
        STREAMGRID_PROGRESS="stdout",
        STREAMGRID_PARENT_PID=str(os.getpid()),  # the worker dies with us
        # The count so far: a respawned worker (after kill -9, or a server
        # restart) continues from here, never below it.
        STREAMGRID_FRAMES_CAPTURED_FLOOR=str(stream.frames_captured),
        # The gateway's source policy, however it was set: the worker checks it.
        STREAMGRID_SOURCE_ALLOW_CIDRS=",".join(s.source_allow_cidrs),
        STREAMGRID_SOURCE_DENY_CIDRS=",".join(s.source_deny_cidrs),
        STREAMGRID_SOURCE_DENY_LOOPBACK=str(s.source_deny_loopback).lower(),
    )
    optional = {
        "STREAMGRID_S3_ENDPOINT_URL": s.s3_endpoint_url,
        "STREAMGRID_S3_ACCESS_KEY_ID": s.s3_access_key_id,
        "STREAMGRID_S3_SECRET_ACCESS_KEY": (
            s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None
        ),
    }
    env.update({k: v for k, v in optional.items() if v})
    # One camera, one thread: a library's thread pool only spins between the
    # worker's calls. OpenCV's yields the CPU about 1,000 times a second per
    # worker after each parallel call: at 64 streams, thousands of runnable
    # threads, and samples lost waiting behind them (docs/benchmarks.md).
    env.setdefault("OPENCV_FOR_THREADS_NUM", "1")
    return env


def is_worker_of(pid: int, stream_id: str) -> bool:
    """Whether ``pid`` is (still) a capture worker of this stream: checked by
    its environment, so a reused PID is never mistaken for it."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"streamgrid.capture" in cmdline and (
        f"STREAMGRID_STREAM_ID={stream_id}".encode() in environ.split(b"\0")
    )
