"""One stream of the embedded runtime as this process holds it: what it was
asked, what its worker last reported, and the handles of its worker's life
(gateway/supervisor.py moves those; gateway/local.py reads the rest)."""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field

from ..core.models import StreamState
from ..core.urls import url_secrets
from ..core.worker_metrics import WorkerMetrics
from .backend import StreamInfo
from .requests import StartRequest
from .state import StreamRecord
from .workers import WorkerProcess


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
    process: WorkerProcess | None = None
    restarts: int = 0
    exits_in_a_row: int = 0  # unexpected exits with no Active run between
    stopping: threading.Event = field(default_factory=threading.Event)
    stop_lock: threading.Lock = field(default_factory=threading.Lock)
    expired: bool = False  # its data is being or was deleted (under stop_lock)
    # Spawning a worker and deciding to stop exclude each other (gateway/supervisor.py).
    spawn_lock: threading.Lock = field(default_factory=threading.Lock)
    supervisor: threading.Thread | None = None
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

    def failing_store(self) -> str:
        """The store's error while the live worker holds frames the store
        refused, else "" (a gone worker's last word is stale)."""
        return self.store_error if self.unsaved and self.worker_alive() else ""

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


def stream_of(record: StreamRecord, now: float, now_mono: float) -> LocalStream:
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
    )
