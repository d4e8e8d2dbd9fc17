"""CaptureWorker: connect, sample the newest picture each tick, keep the top K.

Freshness: the worker decodes continuously and samples the picture decoded at
(or just after) each tick, so a sample is never an old buffered frame.
Durability: a frame that enters the top K is in the store before the next one
is looked at, and an evicted frame is deleted after its replacement is written;
a restarted worker rebuilds its top K and its count from the store.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.grid import encode_jpeg
from ..core.logs import log_event
from ..core.models import FrameRecord, Manifest, StreamState
from ..core.store import FrameStore
from ..core.topk import TopK, best
from ..core.urls import mask_secrets
from .progress import Progress, ProgressSink
from .sampling import TickSampler
from .settings import CaptureSettings
from .source import Picture, SourceError, SourceFatalError, VideoSource
from .tls import TlsPolicy

log = logging.getLogger("streamgrid.capture")

EXIT_STOPPED, EXIT_CRASHED, EXIT_FAILED = 0, 1, 3


@dataclass
class Backoff:
    """Capped exponential backoff with +-20 % jitter, so cameras are not hammered
    in lockstep after a shared outage."""

    initial: float
    cap: float
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        delay = min(self.cap, self.initial * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return float(delay * self.rng.uniform(0.8, 1.2))

    def reset(self) -> None:
        self.attempt = 0


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
        self.store = store
        self.progress = progress
        self.source_factory = source_factory
        self.stream_id = settings.stream_id
        self.topk: TopK = TopK(settings.top_k)
        self.unsaved: dict[FrameRecord, bytes] = {}  # kept, but the store refused it
        self.frames_captured = 0
        self.state = StreamState.CONNECTING
        self.reason = ""
        self.codec = ""
        self.last_frame_at: float | None = None
        self.backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self._lock = threading.Lock()  # samples vs the final flush
        self._finished = False
        self._last_manifest = 0.0
        self.sampler: TickSampler | None = None
        self.source: VideoSource | None = None

    # -- restart -------------------------------------------------------------
    def restore(self) -> None:
        """Rebuild the top K and the sample count from what the store holds."""
        records = self.store.list_frames(self.stream_id)
        manifest = self.store.get_manifest(self.stream_id)
        keep = best(records, self.settings.top_k)
        for record in records:
            if record not in keep:  # a crash between write and evict, or a smaller K
                self.store.delete_frame(self.stream_id, record)
        for record in keep:
            self.topk.offer(record)
        counted = manifest.frames_captured if manifest else 0
        self.frames_captured = max([counted] + [r.seq + 1 for r in records])
        if records or manifest:
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
                return EXIT_FAILED
            except SourceError as exc:
                if stop.is_set():
                    break
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
                self._retry_unsaved()
                stop.wait(delay)
        self.finish(StreamState.STOPPED)
        return EXIT_STOPPED

    def _capture(self, source: VideoSource, stop: threading.Event) -> None:
        settings = self.settings
        sampler = TickSampler(
            source.decoder(),
            settings.capture_interval,
            settings.decode_mode,
            time.monotonic(),
            recovers_skipped=source.recovers_skipped,
        )
        self.sampler = sampler
        for arrival in source.arrivals(stop, sampler.skipping_until):
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
                continue
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
                jpeg = encode_jpeg(picture.to_bgr(), self.settings.jpeg_quality)
                _, evicted = self.topk.offer(record)
                self._save(record, jpeg)
                if evicted is not None:
                    self._evict(evicted)
            self._report(self.state)
            if time.monotonic() - self._last_manifest >= self.settings.manifest_interval:
                self._write_manifest(final=False)

    # -- store ---------------------------------------------------------------
    def _save(self, record: FrameRecord, jpeg: bytes) -> None:
        try:
            self.store.put_frame(self.stream_id, record, jpeg)
        except Exception as exc:  # noqa: BLE001 - any store failure: keep it, retry later
            self.unsaved[record] = jpeg
            log_event(
                log,
                "store.write_failed",
                logging.WARNING,
                stream_id=self.stream_id,
                seq=record.seq,
                error=mask_secrets(str(exc)),
            )

    def _evict(self, record: FrameRecord) -> None:
        if self.unsaved.pop(record, None) is not None:
            return
        try:
            self.store.delete_frame(self.stream_id, record)
        except Exception as exc:  # noqa: BLE001 - a stale extra frame is dropped on restore
            log_event(
                log,
                "store.delete_failed",
                logging.WARNING,
                stream_id=self.stream_id,
                seq=record.seq,
                error=mask_secrets(str(exc)),
            )

    def _retry_unsaved(self) -> None:
        for record, jpeg in list(self.unsaved.items()):
            del self.unsaved[record]
            self._save(record, jpeg)

    def _write_manifest(self, final: bool) -> None:
        self._last_manifest = time.monotonic()
        manifest = Manifest(
            stream_id=self.stream_id,
            frames_captured=self.frames_captured,
            kept=self.topk.records(),
            state=self.state,
            updated_at=time.time(),
            final=final,
            reason=self.reason,
            extra={"codec": self.codec} if self.codec else {},
        )
        try:
            self.store.put_manifest(manifest)
        except Exception as exc:  # noqa: BLE001 - the next manifest or a restore recovers
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
            self._report(state, self.reason)
            log_event(
                log,
                "worker.finished",
                stream_id=self.stream_id,
                state=state.value,
                frames_captured=self.frames_captured,
                kept=len(self.topk),
                unsaved=len(self.unsaved),
            )

    def _report(self, state: StreamState, reason: str = "") -> None:
        self.state = state
        if reason or state in (StreamState.ACTIVE, StreamState.CONNECTING):
            self.reason = reason
        self.progress.report(
            Progress(
                state=state,
                frames_captured=self.frames_captured,
                kept=len(self.topk),
                last_frame_at=self.last_frame_at,
                reason=self.reason,
                codec=self.codec,
            )
        )
