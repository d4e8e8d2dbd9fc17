"""The embedded runtime: stream state in this process, one worker process per
stream (the same ``python -m streamgrid.capture`` a capture pod runs), frames
in the configured store (a local directory by default).

A supervisor thread per stream plays the operator's part: it reads the
worker's progress lines, restarts a worker that died unexpectedly (with
backoff, up to a limit), and leaves one that failed for good (exit 3) alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..capture.worker import EXIT_FAILED, EXIT_STOPPED, Backoff
from ..core.grid import GridGeometry
from ..core.logs import log_event, register_secret
from ..core.models import StreamState, is_valid_stream_id
from ..core.store import FrameStore
from ..core.urls import mask_secrets, mask_url, url_secrets
from .backend import StreamInfo, StreamNotFound, TooManyStreams
from .grids import grid_for_stream
from .requests import StartRequest
from .settings import GatewaySettings

log = logging.getLogger("streamgrid.gateway")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor thread's process dies, so a
    killed server leaves no orphan workers."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class LocalStream:
    stream_id: str
    request: StartRequest
    masked_url: str
    started_at: float = field(default_factory=time.time)
    started_mono: float = field(default_factory=time.monotonic)
    state: StreamState = StreamState.CONNECTING
    reason: str = ""
    frames_captured: int = 0
    kept: int = 0
    last_frame_at: float | None = None
    codec: str = ""
    stopped_at: float | None = None
    stopped_mono: float | None = None
    process: subprocess.Popen[str] | None = None
    restarts: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)
    stop_lock: threading.Lock = field(default_factory=threading.Lock)
    supervisor: threading.Thread | None = None

    def info(self) -> StreamInfo:
        end = self.stopped_mono if self.stopped_mono is not None else time.monotonic()
        process = self.process
        return StreamInfo(
            stream_id=self.stream_id,
            url=self.masked_url,
            state=self.state,
            frames_captured=self.frames_captured,
            running_time=end - self.started_mono,
            started_at=self.started_at,
            reason=self.reason,
            stopped_at=self.stopped_at,
            last_frame_at=self.last_frame_at,
            capture_interval=self.request.capture_interval,
            top_k=self.request.top_k,
            details={
                "kept": self.kept,
                "codec": self.codec,
                "rtsp_transport": self.request.rtsp_transport,
                "tls_verify": self.request.tls_verify,
                "worker": {
                    "pid": process.pid if process and process.poll() is None else None,
                    "restarts": self.restarts,
                },
            },
        )


class LocalBackend:
    def __init__(self, settings: GatewaySettings, store: FrameStore) -> None:
        self.settings = settings
        self.store = store
        self._streams: dict[str, LocalStream] = {}
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------
    def start(self, request: StartRequest) -> str:
        self._expire()
        with self._lock:
            running = sum(1 for s in self._streams.values() if s.state != StreamState.STOPPED)
            if running >= self.settings.max_streams:
                raise TooManyStreams(self.settings.max_streams)
            stream_id = secrets.token_hex(8)
            while stream_id in self._streams:
                stream_id = secrets.token_hex(8)
            stream = LocalStream(stream_id, request, mask_url(request.rtsp_url))
            self._streams[stream_id] = stream
        register_secret(*url_secrets(request.rtsp_url))
        stream.supervisor = threading.Thread(
            target=self._supervise, args=(stream,), name=f"supervise-{stream_id}", daemon=True
        )
        stream.supervisor.start()
        log_event(
            log,
            "stream.started",
            stream_id=stream_id,
            url=stream.masked_url,
            interval=request.capture_interval,
            top_k=request.top_k,
        )
        return stream_id

    def active(self) -> list[StreamInfo]:
        self._expire()
        with self._lock:
            streams = list(self._streams.values())
        return [s.info() for s in streams if s.state != StreamState.STOPPED]

    def info(self, stream_id: str) -> StreamInfo:
        return self._get(stream_id).info()

    def stop(self, stream_id: str, geometry: GridGeometry | None) -> bytes:
        stream = self._get(stream_id)
        self._stop_worker(stream)
        return grid_for_stream(
            self.store, stream_id, stream.request.top_k, geometry or stream.request.geometry
        )

    def stop_all(self) -> dict[str, str]:
        with self._lock:
            streams = [s for s in self._streams.values() if s.state != StreamState.STOPPED]
        if not streams:
            return {}
        with ThreadPoolExecutor(max_workers=min(32, len(streams))) as pool:
            list(pool.map(self._stop_worker, streams))
        return {s.stream_id: s.state.value for s in streams}

    def close(self) -> None:
        self.stop_all()

    # -- internals -----------------------------------------------------------
    def _get(self, stream_id: str) -> LocalStream:
        self._expire()
        if not is_valid_stream_id(stream_id):
            raise StreamNotFound(stream_id)
        with self._lock:
            stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(stream_id)
        return stream

    def _expire(self) -> None:
        """Forget stopped streams past the retention, and delete their data."""
        horizon = time.monotonic() - self.settings.stopped_retention_seconds
        with self._lock:
            expired = [
                s
                for s in self._streams.values()
                if s.stopped_mono is not None and s.stopped_mono < horizon
            ]
            for s in expired:
                del self._streams[s.stream_id]
        for s in expired:
            try:
                self.store.delete_stream(s.stream_id)
            except Exception as exc:  # noqa: BLE001 - retried by nobody; logged
                log_event(
                    log,
                    "stream.purge_failed",
                    logging.WARNING,
                    stream_id=s.stream_id,
                    error=str(exc),
                )
            log_event(log, "stream.expired", stream_id=s.stream_id)

    def _stop_worker(self, stream: LocalStream) -> None:
        with stream.stop_lock:
            if stream.state == StreamState.STOPPED:
                return
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
            if stream.supervisor is not None:
                stream.supervisor.join(5.0)
            stream.stopped_at = time.time()
            stream.stopped_mono = time.monotonic()
            stream.state = StreamState.STOPPED
            log_event(
                log,
                "stream.stopped",
                stream_id=stream.stream_id,
                frames_captured=stream.frames_captured,
            )

    def _worker_env(self, stream: LocalStream) -> dict[str, str]:
        s, r = self.settings, stream.request
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
        )
        optional = {
            "STREAMGRID_S3_ENDPOINT_URL": s.s3_endpoint_url,
            "STREAMGRID_S3_ACCESS_KEY_ID": s.s3_access_key_id,
            "STREAMGRID_S3_SECRET_ACCESS_KEY": (
                s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None
            ),
        }
        env.update({k: v for k, v in optional.items() if v})
        return env

    def _supervise(self, stream: LocalStream) -> None:
        backoff = Backoff(0.5, 10.0)
        while not stream.stopping.is_set():
            # The URL travels in the environment (readable only by our user),
            # never on the command line where `ps` would show it.
            process = subprocess.Popen(
                [sys.executable, "-m", "streamgrid.capture"],
                env=self._worker_env(stream),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
                preexec_fn=_die_with_parent,
            )
            stream.process = process
            log_event(
                log,
                "worker.spawned",
                stream_id=stream.stream_id,
                pid=process.pid,
                restarts=stream.restarts,
            )
            assert process.stdout is not None
            for line in process.stdout:
                self._on_progress(stream, line)
            code = process.wait()
            if stream.stopping.is_set() or code == EXIT_STOPPED:
                return
            if code == EXIT_FAILED:  # the camera refused us for good: no restart
                self._fail(stream, stream.reason)
                return
            stream.restarts += 1
            if stream.restarts > self.settings.worker_restart_limit:
                self._fail(stream, f"worker exited {stream.restarts} times (last code {code})")
                return
            stream.state = StreamState.RECONNECTING
            stream.reason = f"worker exited with code {code}; restarting"
            log_event(
                log,
                "worker.exited",
                logging.WARNING,
                stream_id=stream.stream_id,
                code=code,
                restarts=stream.restarts,
            )
            stream.stopping.wait(backoff.next())

    def _fail(self, stream: LocalStream, reason: str) -> None:
        stream.state, stream.reason = StreamState.FAILED, reason
        log_event(log, "stream.failed", logging.ERROR, stream_id=stream.stream_id, reason=reason)

    def _on_progress(self, stream: LocalStream, line: str) -> None:
        try:
            data = json.loads(line)
            state = StreamState(data["state"])
        except (ValueError, KeyError, TypeError):
            return  # not a progress line
        if stream.state != StreamState.STOPPED and not (
            stream.stopping.is_set() and state == StreamState.STOPPED
        ):
            stream.state = state
        stream.frames_captured = max(stream.frames_captured, int(data.get("frames_captured", 0)))
        stream.kept = int(data.get("kept", 0))
        stream.last_frame_at = data.get("last_frame_at") or stream.last_frame_at
        stream.reason = mask_secrets(str(data.get("reason", "")))
        stream.codec = str(data.get("codec", "")) or stream.codec
