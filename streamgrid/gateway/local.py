"""The embedded runtime: stream state in this process, one worker process per
stream (the same ``python -m streamgrid.capture`` a capture pod runs), frames
in the configured store (a local directory by default).

A supervisor thread per stream plays the operator's part: it reads the
worker's progress lines, restarts a worker that died unexpectedly (with
backoff, up to a limit), and leaves one that failed for good (exit 3) alone.

Start, stop and stop-all are race-free: a worker is spawned only under its
stream's ``spawn_lock`` after checking ``stopping``, and a stop sets
``stopping`` under the same lock before it signals whatever process exists,
so a /stop that overtakes the spawn leaves no orphan. The stream cap counts
every stream whose worker may be alive.

Stream records are durable (gateway/state.py, SQLite in the state dir). After
a restart of the server, however it ended:

- streams that were running resume: a worker is spawned again, its top K is
  rebuilt from the store and its count continues from the last one recorded
  (passed to the worker as a floor, so counts and sequence numbers never go
  back, kill -9 included);
- stopped streams keep their status and grid until the retention, counted
  from their wall-clock ``stopped_at``; then their data and record go.

A graceful shutdown (SIGTERM: a systemd restart, an upgrade) stops the
workers but keeps their streams running in the records, so they resume on
the next start; only POST /stop (or /stop/<id>) marks a stream Stopped.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.crd import WorkerExit
from ..core.geometry import GridGeometry
from ..core.grid_store import grid_for_stream
from ..core.logs import log_event, register_secret
from ..core.models import FrameRecord, StreamState, is_valid_stream_id
from ..core.restarts import permanent_exit
from ..core.stores.base import StoreError
from ..core.stores.frames import FrameStore
from ..core.urls import mask_secrets, mask_url, url_secrets
from ..core.worker_metrics import WorkerMetrics
from .backend import (
    StoreUnavailable,
    StreamInfo,
    StreamNotFound,
    TooManyStreams,
    read_frame,
    read_kept_frames,
)
from .listing import ListEntry, entry_of
from .requests import StartRequest, check_source
from .settings import GatewaySettings
from .state import StreamRecord, StreamRecords, state_dir_for

log = logging.getLogger("streamgrid.gateway")


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
    # The worker's word on its store: frames it holds that the store refused.
    unsaved: int = 0
    store_error: str = ""
    stopped_at: float | None = None
    stopped_mono: float | None = None
    process: subprocess.Popen[str] | None = None
    restarts: int = 0
    exits_in_a_row: int = 0  # unexpected exits with no Active run between
    stopping: threading.Event = field(default_factory=threading.Event)
    stop_lock: threading.Lock = field(default_factory=threading.Lock)
    expired: bool = False  # its data is being or was deleted (under stop_lock)
    # Spawning a worker and deciding to stop exclude each other (see module doc).
    spawn_lock: threading.Lock = field(default_factory=threading.Lock)
    supervisor: threading.Thread | None = None
    # The count last written to the records, and when (monotonic): the count
    # is written at most once a second, and always before it is shown.
    persisted_frames: int = 0
    persisted_mono: float = 0.0
    # A worker a previous server spawned, to be gone before a new one starts.
    previous_pid: int | None = None
    # Prometheus numbers (gateway/metrics.py): the ended workers' totals, and
    # the running one's last snapshot; their sum never goes back. One
    # attribute, replaced whole, so a scrape never sees half an update.
    worker_numbers: tuple[WorkerMetrics, WorkerMetrics | None] = field(
        default_factory=lambda: (WorkerMetrics(), None)
    )

    @functools.cached_property
    def url_secrets(self) -> list[str]:
        """The camera URL's secrets, to mask in what its worker reports (every
        progress line: worked out once)."""
        return url_secrets(self.request.rtsp_url)

    def worker_alive(self) -> bool:
        process = self.process
        return process is not None and process.poll() is None

    def worker_metrics(self) -> WorkerMetrics:
        ended, live = self.worker_numbers
        total = WorkerMetrics()
        total.add(ended)
        if live is not None:
            total.add(live)
        return total

    def occupies_slot(self) -> bool:
        """Counts toward max_streams: not stopped, or its worker may still run."""
        return self.state != StreamState.STOPPED or self.worker_alive()

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
                "unsaved": self.unsaved,
                "store_error": self.store_error,
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
    def __init__(
        self, settings: GatewaySettings, store: FrameStore, records: StreamRecords | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.records = records or StreamRecords(state_dir_for(settings))
        self._streams: dict[str, LocalStream] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._resume()
        self._expire()
        # Retention runs on a clock, not only when a request happens to come.
        self._janitor = threading.Thread(
            target=self._expire_periodically, name="expire", daemon=True
        )
        self._janitor.start()

    # -- lifecycle -----------------------------------------------------------
    def start(self, request: StartRequest) -> str:
        check_source(request.rtsp_url, self.settings.source_policy())  # 400: a denied address
        self._expire()
        register_secret(*url_secrets(request.rtsp_url))
        with self._lock:
            live = sum(1 for s in self._streams.values() if s.occupies_slot())
            if live >= self.settings.max_streams:
                raise TooManyStreams(self.settings.max_streams)
            stream_id = secrets.token_hex(8)
            while stream_id in self._streams:
                stream_id = secrets.token_hex(8)
            stream = LocalStream(stream_id, request, mask_url(request.rtsp_url))
            try:
                self.records.insert(stream_id, stream.masked_url, request, stream.started_at)
            except sqlite3.Error as exc:  # a full disk: nothing started, say why
                raise StoreUnavailable(f"stream records: {exc}") from None
            self._streams[stream_id] = stream
            # Started before any stop or stop-all can see the stream, so they
            # can always join it.
            self._start_supervisor(stream)
        log_event(
            log,
            "stream.started",
            stream_id=stream_id,
            url=stream.masked_url,
            interval=request.capture_interval,
            top_k=request.top_k,
        )
        return stream_id

    def list_entries(self) -> list[ListEntry]:
        return [entry_of(info) for info in self.active()]

    def active(self) -> list[StreamInfo]:
        self._expire()
        with self._lock:
            streams = [s for s in self._streams.values() if s.state != StreamState.STOPPED]
        return self._shown(streams)

    def info(self, stream_id: str) -> StreamInfo:
        return self._shown([self._get(stream_id)])[0]

    def stop(self, stream_id: str, geometry: GridGeometry | None) -> bytes:
        stream = self._get(stream_id)
        failing = _failing_store(stream)
        if failing:  # the worker holds frames the store refused: stopping it loses them
            raise StoreUnavailable(failing)
        own = stream.request.geometry
        # Under the stream's stop lock: retention cannot delete the frames
        # while the grid is made from them (see _expire).
        with stream.stop_lock:
            if stream.expired:
                raise StreamNotFound(stream_id)
            self._stop_worker_locked(stream)
            return grid_for_stream(
                self.store, stream_id, stream.request.top_k, geometry or own, own
            )

    def stop_all(self) -> dict[str, str]:
        with self._lock:
            # Every stream that has or may get a worker: those being started
            # are in the dict with their supervisor already running.
            streams = [s for s in self._streams.values() if s.occupies_slot()]
        # Streams whose store fails keep running (see stop) and say why.
        failing = {s.stream_id: why for s in streams if (why := _failing_store(s))}
        results = {stream_id: f"Store unavailable: {why}" for stream_id, why in failing.items()}
        streams = [s for s in streams if s.stream_id not in failing]
        if not streams:
            return results
        with ThreadPoolExecutor(max_workers=min(32, len(streams))) as pool:
            list(pool.map(self._stop_worker, streams))
        return results | {s.stream_id: s.state.value for s in streams}

    def kept_frames(self, stream_id: str) -> list[FrameRecord]:
        return read_kept_frames(self.store, stream_id, self._get(stream_id).request.top_k)

    def frame_jpeg(self, stream_id: str, record: FrameRecord) -> bytes | None:
        self._get(stream_id)  # StreamNotFound: an unknown or expired stream
        return read_frame(self.store, stream_id, record)

    def state_counts(self) -> dict[StreamState, int]:
        """Every stream known, by state (gateway/metrics.py)."""
        with self._lock:
            states = [s.state for s in self._streams.values()]
        return {state: states.count(state) for state in StreamState}

    def worker_metrics(self) -> dict[str, WorkerMetrics]:
        """Per stream that holds a slot (at most max_streams), its workers' numbers."""
        with self._lock:
            streams = [s for s in self._streams.values() if s.occupies_slot()]
        return {s.stream_id: s.worker_metrics() for s in streams}

    def close(self) -> None:
        """Stop every worker but leave the records running: they resume on the
        next start (a graceful restart is not a user's stop)."""
        self._closed.set()
        with self._lock:
            streams = [s for s in self._streams.values() if s.occupies_slot()]
        if streams:
            with ThreadPoolExecutor(max_workers=min(32, len(streams))) as pool:
                list(pool.map(self._end_worker, streams))
        self._persist_counts([(s, s.frames_captured) for s in streams], force=True)
        self._janitor.join(5.0)
        self.records.close()

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
        """Forget stopped streams past the retention (wall clock, so it holds
        across restarts), and delete their data, then their record."""
        horizon = time.time() - self.settings.stopped_retention_seconds
        with self._lock:
            expired = [
                s
                for s in self._streams.values()
                if s.state == StreamState.STOPPED
                and s.stopped_at is not None
                and s.stopped_at < horizon
                and not s.worker_alive()
            ]
            for s in expired:
                del self._streams[s.stream_id]
        for s in expired:
            with s.stop_lock:  # a /stop/<id> already past its lookup finishes first
                s.expired = True
                try:
                    self.store.delete_stream(s.stream_id)
                except StoreError as exc:  # the record stays: retried at next start
                    log_event(
                        log,
                        "stream.purge_failed",
                        logging.WARNING,
                        stream_id=s.stream_id,
                        error=str(exc),
                    )
                    continue
            self._write(s, delete=True)
            log_event(log, "stream.expired", stream_id=s.stream_id)

    def _expire_periodically(self) -> None:
        period = min(30.0, max(0.25, self.settings.stopped_retention_seconds / 4))
        while not self._closed.wait(period):
            try:
                self._expire()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log_event(log, "stream.expire_failed", logging.WARNING, error=str(exc))

    def _stop_worker(self, stream: LocalStream) -> None:
        with stream.stop_lock:
            self._stop_worker_locked(stream)

    def _stop_worker_locked(self, stream: LocalStream) -> None:
        """A user's stop: the worker ends and the stream is Stopped for good."""
        # (A worker that stopped on its own, signalled by someone else,
        # left no stopped_at: this stop gives it one, so it can expire.)
        if stream.stopped_at is not None and not stream.worker_alive():
            return
        self._end_worker(stream)
        stream.stopped_at = time.time()
        stream.stopped_mono = time.monotonic()
        stream.state = StreamState.STOPPED
        self._write(
            stream,
            state=StreamState.STOPPED,
            stopped_at=stream.stopped_at,
            frames_captured=stream.frames_captured,
            kept=stream.kept,
            reason=stream.reason,
            worker_pid=None,
        )
        log_event(
            log,
            "stream.stopped",
            stream_id=stream.stream_id,
            frames_captured=stream.frames_captured,
        )

    def _end_worker(self, stream: LocalStream) -> None:
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
        return env

    def _start_supervisor(self, stream: LocalStream) -> None:
        stream.supervisor = threading.Thread(
            target=self._supervise,
            args=(stream,),
            name=f"supervise-{stream.stream_id}",
            daemon=True,
        )
        stream.supervisor.start()

    def _supervise(self, stream: LocalStream) -> None:
        policy, rng = self.settings.restart_policy(), random.Random()
        if stream.previous_pid is not None:
            self._await_previous_worker(stream, stream.previous_pid)
        while True:
            with stream.spawn_lock:
                if stream.stopping.is_set():
                    return  # a stop came first: no worker, ever
                # The URL travels in the environment (readable only by our
                # user), never on the command line where `ps` would show it.
                try:
                    process = subprocess.Popen(
                        [sys.executable, "-m", "streamgrid.capture"],
                        env=self._worker_env(stream),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        text=True,
                        bufsize=1,
                    )
                except OSError as exc:  # EMFILE, ENOMEM: a retry with backoff, not a dead stream
                    process, why = None, f"cannot start a worker: {exc.strerror or exc}"
                stream.process = process
            if process is not None:
                code = self._run_worker(stream, process)
                if stream.stopping.is_set() or code == WorkerExit.STOPPED:
                    return
                if (permanent := permanent_exit(code)) is not None:  # no restart can mend it
                    self._fail(stream, stream.reason or permanent)
                    return
                why = f"worker exited with code {code}"
            stream.restarts += 1
            stream.exits_in_a_row += 1
            if policy.gives_up(stream.exits_in_a_row):
                self._fail(stream, f"{why}; {stream.exits_in_a_row} times in a row, giving up")
                return
            stream.state = StreamState.RECONNECTING
            stream.reason = f"{why}; restarting"
            self._write(stream, state=stream.state, reason=stream.reason, restarts=stream.restarts)
            log_event(
                log,
                "worker.exited",
                logging.WARNING,
                stream_id=stream.stream_id,
                reason=why,
                restarts=stream.restarts,
            )
            stream.stopping.wait(policy.delay(stream.exits_in_a_row, rng))

    def _run_worker(self, stream: LocalStream, process: subprocess.Popen[str]) -> int:
        """Follow a spawned worker's progress until it exits; its exit code."""
        self._write(stream, worker_pid=process.pid, restarts=stream.restarts)
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
                self._on_progress(stream, line)
            return process.wait()
        finally:  # its last numbers join those of the workers before it
            stream.worker_numbers = (stream.worker_metrics(), None)

    def _fail(self, stream: LocalStream, reason: str) -> None:
        stream.state, stream.reason = StreamState.FAILED, reason
        self._write(
            stream,
            state=stream.state,
            reason=reason,
            restarts=stream.restarts,
            frames_captured=stream.frames_captured,
            worker_pid=None,
        )
        log_event(log, "stream.failed", logging.ERROR, stream_id=stream.stream_id, reason=reason)

    def _on_progress(self, stream: LocalStream, line: str) -> None:
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
            self._write(
                stream,
                state=stream.state,
                reason=stream.reason,
                codec=stream.codec,
                frames_captured=stream.frames_captured,
                kept=stream.kept,
                last_frame_at=stream.last_frame_at,
            )
        elif time.monotonic() - stream.persisted_mono >= PERSIST_COUNT_EVERY:
            self._persist_counts([(stream, stream.frames_captured)])

    # -- records -------------------------------------------------------------
    def _resume(self) -> None:
        """Load the records of an earlier run; streams that were running get
        a supervisor (and a worker) again."""
        now, now_mono = time.time(), time.monotonic()
        for record in self.records.load():
            stream = _stream_of(record, now, now_mono)
            register_secret(*stream.url_secrets)
            self._streams[stream.stream_id] = stream
            if record.state in (StreamState.STOPPED, StreamState.FAILED):
                continue
            if not record.source_url_known:
                self._fail(stream, "the stream's URL is missing from the records")
                continue
            stream.state = StreamState.CONNECTING
            stream.reason = "resumed after a restart of the server"
            stream.previous_pid = record.worker_pid
            self._write(stream, state=stream.state, reason=stream.reason)
            self._start_supervisor(stream)
            log_event(
                log,
                "stream.resumed",
                stream_id=stream.stream_id,
                url=stream.masked_url,
                frames_captured=stream.frames_captured,
            )

    def _shown(self, streams: list[LocalStream]) -> list[StreamInfo]:
        """Infos to show, their counts written first: a count once shown is
        never lower after a restart, however the server ended."""
        infos = [s.info() for s in streams]
        self._persist_counts([(s, i.frames_captured) for s, i in zip(streams, infos, strict=True)])
        return infos

    def _persist_counts(self, counts: list[tuple[LocalStream, int]], force: bool = False) -> None:
        changed = [(s, n) for s, n in counts if force or n > s.persisted_frames]
        if not changed:
            return
        try:
            self.records.update_many(
                (
                    s.stream_id,
                    {"frames_captured": n, "kept": s.kept, "last_frame_at": s.last_frame_at},
                )
                for s, n in changed
            )
        except sqlite3.Error as exc:
            log_event(log, "records.write_failed", logging.WARNING, error=str(exc))
            return
        now = time.monotonic()
        for s, n in changed:
            s.persisted_frames, s.persisted_mono = max(s.persisted_frames, n), now

    def _write(self, stream: LocalStream, delete: bool = False, **fields: Any) -> None:
        """One record write; a failing disk is logged, never kills a
        supervisor (it must keep reading its worker's pipe)."""
        try:
            if delete:
                self.records.delete(stream.stream_id)
            else:
                self.records.update(stream.stream_id, **fields)
        except sqlite3.Error as exc:
            log_event(
                log,
                "records.write_failed",
                logging.WARNING,
                stream_id=stream.stream_id,
                error=str(exc),
            )
            return
        if "frames_captured" in fields:  # what _persist_counts need not write again
            count = int(fields["frames_captured"])
            stream.persisted_frames = max(stream.persisted_frames, count)
            stream.persisted_mono = time.monotonic()

    def _await_previous_worker(self, stream: LocalStream, pid: int) -> None:
        """A killed server's workers get SIGTERM (PR_SET_PDEATHSIG) and flush;
        the new worker starts after the old one is gone, so that two never
        write the same stream (or reuse a sequence number)."""
        if not _is_worker_of(pid, stream.stream_id):
            return
        log_event(log, "worker.previous_running", stream_id=stream.stream_id, pid=pid)
        deadline = time.monotonic() + self.settings.stop_timeout_seconds
        while _is_worker_of(pid, stream.stream_id):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                log_event(
                    log, "worker.killed", logging.WARNING, stream_id=stream.stream_id, pid=pid
                )
                deadline = float("inf")
            time.sleep(0.05)


def _failing_store(stream: LocalStream) -> str:
    """The store's error while the stream's live worker holds frames the
    store refused, else "" (a gone worker's last word is stale)."""
    return stream.store_error if stream.unsaved and stream.worker_alive() else ""


PERSIST_COUNT_EVERY = 1.0  # seconds between count writes per stream (state changes: at once)


def _is_worker_of(pid: int, stream_id: str) -> bool:
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


def _stream_of(record: StreamRecord, now: float, now_mono: float) -> LocalStream:
    """A record as a stream of this process; its wall-clock times anchored to
    this process's monotonic clock."""
    return LocalStream(
        stream_id=record.stream_id,
        request=record.request,
        masked_url=record.url,
        started_at=record.started_at,
        started_mono=now_mono - max(0.0, now - record.started_at),
        state=record.state,
        reason=record.reason,
        frames_captured=record.frames_captured,
        kept=record.kept,
        last_frame_at=record.last_frame_at,
        codec=record.codec,
        stopped_at=record.stopped_at,
        stopped_mono=(
            None if record.stopped_at is None else now_mono - max(0.0, now - record.stopped_at)
        ),
        restarts=record.restarts,
        persisted_frames=record.frames_captured,
        persisted_mono=now_mono,
    )
