"""The embedded runtime: stream state in this process, one worker process per
stream (the ``streamgrid.capture`` main a capture pod runs), frames in the
configured store (a local directory by default).

Each stream's worker is looked after by its supervisor (gateway/supervisor.py:
spawn, progress, restarts, stop). Start, stop and stop-all are race-free: the
stream cap counts every stream whose worker may be alive, and a stop that
overtakes the spawn leaves no orphan (see gateway/supervisor.py).

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

import logging
import secrets
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ..core.geometry import GridGeometry
from ..core.grid_store import grid_for_stream
from ..core.logs import log_event, register_secret
from ..core.models import FrameRecord, StreamState, is_valid_stream_id
from ..core.stores.base import StoreError
from ..core.stores.frames import FrameStore
from ..core.urls import mask_url, url_secrets
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
from .local_stream import LocalStream, stream_of
from .requests import StartRequest, check_source
from .settings import GatewaySettings
from .state import Counts, RecordWriter, StreamRecords, state_dir_for
from .supervisor import Supervisor
from .workers import Spawner, open_spawner

__all__ = ["LocalBackend", "LocalStream"]

log = logging.getLogger("streamgrid.gateway")


class LocalBackend:
    def __init__(
        self,
        settings: GatewaySettings,
        store: FrameStore,
        records: StreamRecords | None = None,
        spawner: Spawner | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.records = records or StreamRecords(state_dir_for(settings))
        self.writer = RecordWriter(self.records)
        self.supervisor = Supervisor(settings, self.writer, spawner or open_spawner(settings))
        self._streams: dict[str, LocalStream] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        log_event(log, "gateway.stream_cap", max_streams=settings.stream_limit())
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
                raise TooManyStreams(self.settings.stream_limit())
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
            self.supervisor.start(stream)
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
        failing = stream.failing_store()
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
        failing = {s.stream_id: why for s in streams if (why := s.failing_store())}
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
                list(pool.map(self.supervisor.end_worker, streams))
        self.writer.write_counts([(s.stream_id, _counts(s)) for s in streams], force=True)
        self.supervisor.spawner.close()
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

    def _stop_worker(self, stream: LocalStream) -> None:
        with stream.stop_lock:
            self._stop_worker_locked(stream)

    def _stop_worker_locked(self, stream: LocalStream) -> None:
        """A user's stop: the worker ends and the stream is Stopped for good."""
        # (A worker that stopped on its own, signalled by someone else,
        # left no stopped_at: this stop gives it one, so it can expire.)
        if stream.stopped_at is not None and not stream.worker_alive():
            return
        self.supervisor.end_worker(stream)
        stream.stopped_at = time.time()
        stream.stopped_mono = time.monotonic()
        stream.state = StreamState.STOPPED
        self.writer.write(
            stream.stream_id,
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

    def _resume(self) -> None:
        """Load the records of an earlier run; streams that were running get
        a supervisor (and a worker) again."""
        now, now_mono = time.time(), time.monotonic()
        for record in self.records.load():
            stream = stream_of(record, now, now_mono)
            self.writer.written(stream.stream_id, record.frames_captured)
            register_secret(*stream.url_secrets)
            self._streams[stream.stream_id] = stream
            if record.state in (StreamState.STOPPED, StreamState.FAILED):
                continue
            if not record.source_url_known:
                self.supervisor.fail(stream, "the stream's URL is missing from the records")
                continue
            stream.state = StreamState.CONNECTING
            stream.reason = "resumed after a restart of the server"
            stream.previous_pid = record.worker_pid
            self.writer.write(stream.stream_id, state=stream.state, reason=stream.reason)
            self.supervisor.start(stream)
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
        self.writer.write_counts(
            [
                (s.stream_id, Counts(i.frames_captured, s.kept, s.last_frame_at))
                for s, i in zip(streams, infos, strict=True)
            ]
        )
        return infos

    # -- retention -----------------------------------------------------------
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
            self.writer.delete(s.stream_id)
            log_event(log, "stream.expired", stream_id=s.stream_id)

    def _expire_periodically(self) -> None:
        period = min(30.0, max(0.25, self.settings.stopped_retention_seconds / 4))
        while not self._closed.wait(period):
            try:
                self._expire()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log_event(log, "stream.expire_failed", logging.WARNING, error=str(exc))


def _counts(stream: LocalStream) -> Counts:
    return Counts(stream.frames_captured, stream.kept, stream.last_frame_at)
