"""Running a CaptureWorker in-process, recording what it reports."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamgrid.capture.progress import Progress
from streamgrid.capture.settings import CaptureSettings
from streamgrid.capture.worker import CaptureWorker
from streamgrid.core.models import StreamState
from streamgrid.core.stores.directory import DirectoryObjectStore
from streamgrid.core.stores.frames import FrameStore

from .processes import wait_until


@dataclass
class RecordingProgress:
    reports: list[Progress] = field(default_factory=list)

    def report(self, progress: Progress) -> None:
        self.reports.append(progress)

    def close(self, timeout: float = 10.0) -> None:
        pass

    def states(self) -> list[StreamState]:
        return [p.state for p in self.reports]

    def last(self) -> Progress:
        return self.reports[-1]


@dataclass
class RunningWorker:
    worker: CaptureWorker
    progress: RecordingProgress
    stop_event: threading.Event
    thread: threading.Thread
    result: dict[str, int]

    def wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        wait_until(
            lambda: bool(self.progress.reports) and predicate(self.progress.last()), timeout, what
        )

    def stop(self, timeout: float = 15.0) -> int:
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop in time"
        return self.result["code"]


def capture_settings(url: str, stream_id: str = "test", **overrides: Any) -> CaptureSettings:
    values: dict[str, Any] = {
        "stream_id": stream_id,
        "source_url": url,
        "capture_interval": 0.2,
        "top_k": 9,
        "open_timeout": 5.0,
        "read_timeout": 3.0,
        "backoff_initial": 0.2,
        "backoff_max": 1.0,
        "manifest_interval": 1.0,
        "progress": "none",
    }
    values.update(overrides)
    return CaptureSettings(**values)


def start_worker(settings: CaptureSettings, store: FrameStore) -> RunningWorker:
    progress = RecordingProgress()
    worker = CaptureWorker(settings, store, progress)
    stop = threading.Event()
    result: dict[str, int] = {}

    def body() -> None:
        result["code"] = worker.run(stop)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return RunningWorker(worker, progress, stop, thread, result)


def dir_store(path: Path) -> FrameStore:
    return FrameStore(DirectoryObjectStore(path))


def read_clock_ms(image: np.ndarray) -> int:
    """Decodes the /clock camera's 48-bit barcode (16 px blocks on the top rows)."""
    bits = 48
    row = image[8, : bits * 16].astype(np.int32).mean(axis=-1) if image.ndim == 3 else image[8]
    value = 0
    for bit in range(bits):
        value = (value << 1) | int(row[bit * 16 + 8] > 128)
    return value
