"""CaptureWorker: connect, sample the newest picture each tick, keep the top K.

Freshness: the worker decodes continuously and samples the picture decoded at
(or just after) each tick, so a sample is never an old buffered frame.
Durability: a frame that enters the top K is in the store before the next one
is looked at, and an evicted frame is deleted after its replacement is written;
a restarted worker rebuilds its top K and its count from the store.
Store faults: a frame the store refuses stays in memory (at most K of them:
an evicted unsaved frame is simply dropped) and is retried with backoff from
the sampling loop; meanwhile the reason says "store: <why>" and ``kept``
counts only stored frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from ..core.capture_metrics import WorkerMetrics
from ..core.crd_names import WorkerExit
from ..core.grid_store import StoredGrid, compose_from_store
from ..core.logs import log_event
from ..core.models import FrameRecord, Manifest, StreamState
from ..core.restarts import Backoff
from ..core.stores.base import StoreError, store_error_text
from ..core.stores.frames import FrameStore
from ..core.topk import TopK, best
from ..core.urls import mask_secrets
from .decoding import Picture
from .health import BeatingObjects, Heartbeat
from .metrics import LinkCounts, Throttle
from .progress import Progress, ProgressSink
from .sampling import TickSampler
from .settings import CaptureSettings
from .source import SourceError, SourceFatalError, VideoSource
from .tls import TlsPolicy

log = logging.getLogger("streamgrid.capture")

# Retrying unsaved frames: one small write per try, so the cap is low; it is
# also how long a user who freed space may wait before /stop succeeds.
STORE_RETRY_INITIAL, STORE_RETRY_MAX = 0.5, 10.0
# The largest grid a capture pod composes at stop: a 48 MB canvas, well inside
# the pod's memory limit; K=100 at the default 300x300 tiles is 9 megapixels.
GRID_AT_STOP_MAX_PIXELS = 16_000_000


SourceFactory = Callable[[CaptureSettings], VideoSource]


def default_source(settings: CaptureSettings) -> VideoSource:
    return VideoSource(
        settings.camera_url(),
        transport=settings.rtsp_transport,
        open_timeout=settings.open_timeout,
        read_timeout=settings.read_timeout,
        decode_threads=settings.decode_threads,
        probe_seconds=settings.probe_seconds,
        demuxer=settings.demuxer,
        tls=TlsPolicy(
            settings.tls_verify, str(settings.tls_ca_file) if settings.tls_ca_file else None
        ),
        source_policy=settings.source_policy(),
    )


class CaptureWorker:
    def __init__(
        self,
        settings: CaptureSettings,
        store: FrameStore,
        progress: ProgressSink,
        source_factory: SourceFactory = default_source,
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.source_factory = source_factory
        self.stream_id = settings.stream_id
        self.topk: TopK = TopK(settings.top_k)
        self.unsaved: dict[FrameRecord, bytes] = {}  # kept, but the store refused it
        self.store_error = ""  # why the store last refused a frame
        self.store_backoff = Backoff(STORE_RETRY_INITIAL, STORE_RETRY_MAX)
        self._store_retry_at = 0.0  # monotonic time of the next retry of self.unsaved
        self.frames_captured = 0
        self.state = StreamState.CONNECTING
        self.reason = ""
        self.codec = ""
        self.last_frame_at: float | None = None
        self.backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self.heartbeat = Heartbeat()  # the liveness probe's evidence (capture/health.py)
        # Every finished store call beats too: a slow store is not a hung loop.
        self.store = FrameStore(BeatingObjects(store.objects, self.heartbeat))
        self._lock = threading.Lock()  # samples vs the final flush
        self._finished = False
        self.grid: StoredGrid | None = None  # the default grid, stored at a graceful stop
        self._last_manifest = 0.0
        self.sampler: TickSampler | None = None
        self.source: VideoSource | None = None
        # Prometheus numbers (capture/metrics.py): plain counters, read by the
        # health server's /metrics or sent in progress lines (throttled).
        self.metrics = WorkerMetrics()
        self._metrics_due = Throttle()
        self._link: LinkCounts | None = None

    # -- restart -------------------------------------------------------------
    def restore(self) -> None:
        """Rebuild the top K and the sample count from what the store holds.

        The count is the highest of: the floor the runtime passes (the last
        count it saw reported: the manifest may be up to manifest_interval
        older after a kill -9), the manifest's, and one past every stored
        sequence number; so neither the count nor a sequence number goes back.
        """
        records = self.store.list_frames(self.stream_id)
        manifest = self.store.get_manifest(self.stream_id)
        keep = best(records, self.settings.top_k)
        for record in records:
            if record not in keep:  # a crash between write and evict, or a smaller K
                self.store.delete_frame(self.stream_id, record)
        for record in keep:
            self.topk.offer(record)
        counted = manifest.frames_captured if manifest else 0
        floor = self.settings.frames_captured_floor
        self.frames_captured = max([counted, floor] + [r.seq + 1 for r in records])
        if records or manifest or floor:
            log_event(
                log,
                "worker.restored",
                stream_id=self.stream_id,
                kept=len(keep),
                frames_captured=self.frames_captured,
            )

    # -- the loop ------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        self.restore()
        self._report(StreamState.CONNECTING)
        while not stop.is_set():
            self.heartbeat.beat()  # each connection attempt, after each backoff wait
            try:
                with self.source_factory(self.settings) as source:
                    self.source = source
                    self.codec = source.codec_name()
                    self._capture(source, stop)
            except SourceFatalError as exc:
                self._report(StreamState.FAILED, str(exc))
                log_event(
                    log, "worker.failed", logging.ERROR, stream_id=self.stream_id, reason=str(exc)
                )
                self.finish(StreamState.FAILED)
                return WorkerExit.FAILED
            except SourceError as exc:
                if stop.is_set():
                    break
                self.metrics.reconnected(str(exc))
                delay = self.backoff.next()
                reason = mask_secrets(str(exc))
                self._report(StreamState.RECONNECTING, reason)
                log_event(
                    log,
                    "worker.reconnecting",
                    logging.WARNING,
                    stream_id=self.stream_id,
                    reason=reason,
                    retry_in=round(delay, 2),
                )
                self._retry_if_due()
                stop.wait(delay)
        self.finish(StreamState.STOPPED)
        return WorkerExit.STOPPED

    def _capture(self, source: VideoSource, stop: threading.Event) -> None:
        settings = self.settings
        sampler = TickSampler(
            source.decoder(),
            settings.capture_interval,
            settings.decode_mode,
            time.monotonic(),
            recovers_skipped=source.recovers_skipped,
            observe_decode=self.metrics.observe_decode,
        )
        self.sampler = sampler
        self._link = link = LinkCounts(source)
        try:
            self._sample_arrivals(source, sampler, link, stop)
        finally:  # the connection's last counts, before the source closes it
            self.metrics.link_read(*link.read())
            self.metrics.link_closed()
            self._link = None

    def _sample_arrivals(
        self, source: VideoSource, sampler: TickSampler, link: LinkCounts, stop: threading.Event
    ) -> None:
        settings = self.settings
        for arrival in source.arrivals(stop, sampler.skipping_until):
            self.heartbeat.beat()
            if arrival is not None:
                link.seen(arrival.packet.size)
            frame = sampler.offer(arrival) if arrival is not None else None
            if frame is not None:
                if self.state is not StreamState.ACTIVE:
                    self.backoff.reset()
                    self._report(StreamState.ACTIVE)
                    log_event(
                        log,
                        "worker.active",
                        stream_id=self.stream_id,
                        codec=self.codec,
                        demux=source.demux,
                    )
                self.sample(Picture(frame))
                # Its picture goes now, not when the next packet comes (which in
                # keyframe mode is up to a GOP later): 3 MB at 1080p.
                frame = None
                continue
            self._retry_if_due()  # a long interval must not hold up a retry
            now = arrival.arrived if arrival is not None else time.monotonic()
            if sampler.overdue(now) > settings.no_frame_timeout + (sampler.gop or 0):
                raise SourceError(f"no picture decoded for {settings.no_frame_timeout:g} s")

    def interrupt(self) -> None:
        """From another thread (a signal handler): end a blocked read at once."""
        source = self.source
        if source is not None:
            source.interrupt()

    def sample(self, picture: Picture) -> None:
        with self._lock:
            if self._finished:
                return
            # Millisecond times, like the store key, so a record rebuilt from a
            # listing is equal to the one held in memory.
            record = FrameRecord(self.frames_captured, picture.brightness(), round(time.time(), 3))
            self.frames_captured += 1
            self.metrics.samples += 1
            if self.sampler is not None:
                self.metrics.sample_lag_seconds.observe(self.sampler.last_lag)
            self.last_frame_at = record.captured_at
            if log.isEnabledFor(logging.DEBUG):  # per-sample detail, for benchmarks
                sampler = self.sampler
                log_event(
                    log,
                    "worker.sample",
                    logging.DEBUG,
                    stream_id=self.stream_id,
                    seq=record.seq,
                    brightness=record.brightness,
                    at=record.captured_at,
                    pts=picture.pts_time,
                    decodes=sampler.decodes if sampler else None,
                    mode=sampler.active_mode().value if sampler else None,
                )
            if self.topk.would_enter(record.brightness):
                started = time.perf_counter()
                jpeg = picture.to_jpeg(self.settings.jpeg_quality)
                self.metrics.jpeg_seconds.observe(time.perf_counter() - started)
                _, evicted = self.topk.offer(record)
                self._save(record, jpeg)
                if evicted is not None:
                    self._evict(evicted)
            if self.store_error and (not self.unsaved or time.monotonic() >= self._store_retry_at):
                self._retry_unsaved()  # due, or all evicted meanwhile: then it clears the error
            self._report(self.state)
            if time.monotonic() - self._last_manifest >= self.settings.manifest_interval:
                self._write_manifest(final=False)

    # -- store ---------------------------------------------------------------
    def _save(self, record: FrameRecord, jpeg: bytes) -> None:
        """Put a frame that just entered the top K; if the store refuses it,
        keep it in memory for a retry."""
        try:
            self.store.put_frame(self.stream_id, record, jpeg)
        except StoreError as exc:  # keep it, retry later
            first = not self.unsaved
            self.unsaved[record] = jpeg
            self.store_error = store_error_text(exc)
            if first:  # later failures of new frames do not push the retry back
                self._store_retry_at = time.monotonic() + self.store_backoff.next()
                log_event(
                    log,
                    "store.write_failed",
                    logging.WARNING,
                    stream_id=self.stream_id,
                    seq=record.seq,
                    error=self.store_error,
                )
            return
        if self.unsaved:
            self._store_retry_at = 0.0  # the store took a frame again: retry the rest now
        else:
            self.store_backoff.reset()

    def _evict(self, record: FrameRecord) -> None:
        # An unsaved frame lives only here: evicting it drops it, so at most K
        # frames are ever held in memory however long the store fails.
        if self.unsaved.pop(record, None) is not None:
            return
        try:
            self.store.delete_frame(self.stream_id, record)
        except StoreError as exc:  # a stale extra frame is dropped on restore
            log_event(
                log,
                "store.delete_failed",
                logging.WARNING,
                stream_id=self.stream_id,
                seq=record.seq,
                error=mask_secrets(str(exc)),
            )

    def _retry_if_due(self) -> None:
        if not self.unsaved or time.monotonic() < self._store_retry_at:
            return  # the common case, checked without the lock
        with self._lock:
            if not self._finished and self.unsaved:
                self._retry_unsaved()
                self._report(self.state)

    def _retry_unsaved(self) -> None:
        """Put the unsaved frames, brightest first; at the first refusal the
        store is still failing: back off and leave the rest for the next try."""
        for record in sorted(self.unsaved, key=lambda r: r.rank_key):
            try:
                self.store.put_frame(self.stream_id, record, self.unsaved[record])
            except StoreError as exc:  # retry later
                self.store_error = store_error_text(exc)
                delay = self.store_backoff.next()
                self._store_retry_at = time.monotonic() + delay
                log_event(
                    log,
                    "store.retry_failed",
                    logging.WARNING,
                    stream_id=self.stream_id,
                    unsaved=len(self.unsaved),
                    error=self.store_error,
                    retry_in=round(delay, 2),
                )
                return
            del self.unsaved[record]
        if self.store_error:
            log_event(log, "store.recovered", stream_id=self.stream_id, kept=len(self.topk))
        self.store_error = ""
        self.store_backoff.reset()

    def _write_manifest(self, final: bool) -> None:
        self._last_manifest = time.monotonic()
        manifest = Manifest(
            stream_id=self.stream_id,
            frames_captured=self.frames_captured,
            # Only what is in the store: a restore must not expect the rest.
            kept=[r for r in self.topk.records() if r not in self.unsaved],
            state=self.state,
            updated_at=time.time(),
            final=final,
            reason=self.reason,
            extra={"codec": self.codec} if self.codec else {},
        )
        try:
            self.store.put_manifest(manifest)
        except StoreError as exc:  # the next manifest or a restore recovers
            log_event(
                log,
                "store.manifest_failed",
                logging.WARNING,
                stream_id=self.stream_id,
                error=mask_secrets(str(exc)),
            )

    def finish(self, state: StreamState) -> None:
        """Flush everything kept and the final manifest; idempotent."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._retry_unsaved()
            self.state = state
            self._write_manifest(final=True)
            if state is StreamState.STOPPED and self.settings.grid_at_stop:
                self.grid = self._store_grid()
            self._report(state, self.reason, final=True)
            log_event(
                log,
                "worker.finished",
                logging.ERROR if self.unsaved else logging.INFO,
                stream_id=self.stream_id,
                state=state.value,
                frames_captured=self.frames_captured,
                kept=len(self.topk) - len(self.unsaved),
                unsaved=len(self.unsaved),  # lost with this process: the store refused them
                store_error=self.failing_store(),
            )

    def _store_grid(self) -> StoredGrid | None:
        """Composes the stream's default grid from the stored top K and stores
        it where the gateway looks (its name says geometry and frame count), so
        a kubectl user has it without the gateway. Grids stored before are
        dropped: frames kept since may have changed them. None (logged) when
        there is nothing to tile, a frame is not stored, or the store refuses."""
        records = best(self.topk.records(), self.settings.top_k)
        geometry = self.settings.grid_geometry()
        if not records or self.unsaved:
            return None  # nothing, or not all of it, is in the store
        width, height = geometry.size(len(records), self.settings.top_k)
        if width * height > GRID_AT_STOP_MAX_PIXELS:
            log_event(
                log, "grid.too_large_for_pod", stream_id=self.stream_id, size=f"{width}x{height}"
            )
            return None  # the gateway composes it, with its own memory
        name = geometry.name(len(records), self.settings.top_k)
        started = time.monotonic()
        try:
            jpeg = compose_from_store(
                partial(self.store.get_frame, self.stream_id),
                records,
                geometry,
                self.settings.top_k,
            )
            for stale in self.store.list_grids(self.stream_id):
                if stale != name:
                    self.store.delete_grid(self.stream_id, stale)
            self.store.put_grid(self.stream_id, name, jpeg)
        except (StoreError, ValueError) as exc:  # ValueError: a frame missing or undecodable
            # The gateway can still compose it from the frames.
            log_event(
                log,
                "grid.failed",
                logging.WARNING,
                stream_id=self.stream_id,
                error=store_error_text(exc),
            )
            return None
        url = f"{self.settings.store_url.rstrip('/')}/{self.stream_id}/grids/{name}"
        log_event(
            log,
            "grid.stored",
            stream_id=self.stream_id,
            name=name,
            frames=len(records),
            ms=round((time.monotonic() - started) * 1000),
        )
        return StoredGrid(name, url, width, height, len(records), time.time())

    def failing_store(self) -> str:
        """The store's error while any kept frame is not stored, else ""."""
        return self.store_error if self.unsaved else ""

    def _report(self, state: StreamState, reason: str = "", final: bool = False) -> None:
        self.state = state
        link = self._link
        if link is not None:
            self.metrics.link_read(*link.read())
        metrics = self.metrics.to_json() if final or self._metrics_due.due() else None
        if reason or state in (StreamState.ACTIVE, StreamState.CONNECTING):
            self.reason = reason
        store_error = self.failing_store()
        # The camera's trouble first (it explains the state); else the store's,
        # while capture goes on (Active) with frames held only in memory.
        shown = self.reason or (f"store: {store_error}" if store_error else "")
        self.progress.report(
            Progress(
                state=state,
                frames_captured=self.frames_captured,
                kept=len(self.topk) - len(self.unsaved),  # stored frames only
                last_frame_at=self.last_frame_at,
                reason=shown,
                codec=self.codec,
                unsaved=len(self.unsaved),
                store_error=store_error,
                grid=self.grid,
                metrics=metrics,
            )
        )
