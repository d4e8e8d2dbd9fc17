"""Where the worker reports progress: the embedded supervisor reads JSON lines
from the worker's stdout; the cluster runtime patches the custom resource."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Protocol

from ..core.grid_store import StoredGrid
from ..core.models import StreamState


@dataclass(frozen=True)
class Progress:
    state: StreamState
    frames_captured: int
    kept: int
    last_frame_at: float | None
    reason: str = ""
    codec: str = ""
    # Frames in the top K that the store refused (kept in memory, retried;
    # ``kept`` counts only stored ones), and the store's last error meanwhile.
    unsaved: int = 0
    store_error: str = ""
    # The grid stored at a graceful stop (cluster: grid_at_stop), in the final report.
    grid: StoredGrid | None = None
    # The worker's counters (core/capture_metrics.py, WorkerMetrics.to_json), at
    # most once a second and in the final report; not part of the state, so
    # a report that differs only here is the same progress.
    metrics: dict[str, Any] | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["state"] = self.state.value
        if self.metrics is None:
            del data["metrics"]
        return data


class ProgressSink(Protocol):
    def report(self, progress: Progress) -> None: ...

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is pending (the final state) before the process exits."""


class JsonLinesProgress:
    """One JSON object per line; the supervisor parses them."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout

    def report(self, progress: Progress) -> None:
        try:
            self.out.write(json.dumps(progress.to_json(), separators=(",", ":")) + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass  # the supervisor went away; the store still has everything

    def close(self, timeout: float = 10.0) -> None:
        pass


class NoProgress:
    def report(self, progress: Progress) -> None:
        pass

    def close(self, timeout: float = 10.0) -> None:
        pass
