"""What the HTTP layer needs from a runtime: the embedded one or the cluster."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..core.geometry import GridGeometry
from ..core.grid_store import GridFailed, NoFramesCaptured, StoreUnavailable
from ..core.models import FrameRecord, StreamState
from ..core.stores.base import StoreError, store_error_text
from ..core.stores.frames import FrameStore
from ..core.topk import best
from .requests import StartRequest

__all__ = [
    "GridFailed",
    "NoFramesCaptured",
    "StoreUnavailable",
    "StreamBackend",
    "StreamInfo",
    "StreamNotFound",
    "TooManyStreams",
]

if TYPE_CHECKING:
    from .listing import ListEntry


class StreamNotFound(LookupError):
    pass


class TooManyStreams(RuntimeError):
    pass


@dataclass
class StreamInfo:
    stream_id: str
    url: str  # credentials masked
    state: StreamState
    frames_captured: int
    running_time: float  # seconds since start, frozen at stop
    started_at: float
    reason: str = ""
    stopped_at: float | None = None
    last_frame_at: float | None = None
    capture_interval: float = 1.0
    top_k: int = 9
    details: dict[str, Any] = field(default_factory=dict)

    def list_entry(self) -> dict[str, Any]:
        """The spec's /list fields, plus state (an extension)."""
        return {
            "frames_captured": self.frames_captured,
            "url": self.url,
            "running_time": round(self.running_time, 1),
            "state": self.state.value,
        }

    def status_line(self) -> str:
        text = f"Stream status: {self.state.value}"
        if self.reason and self.state in (StreamState.RECONNECTING, StreamState.FAILED):
            text += f" ({self.reason})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "url": self.url,
            "state": self.state.value,
            "reason": self.reason,
            "frames_captured": self.frames_captured,
            "running_time": round(self.running_time, 3),
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "last_frame_at": self.last_frame_at,
            "capture_interval": self.capture_interval,
            "top_k": self.top_k,
            **self.details,
        }


class StreamBackend(Protocol):
    def start(self, request: StartRequest) -> str: ...

    def active(self) -> list[StreamInfo]: ...

    def list_entries(self) -> list[ListEntry]:
        """active(), encoded for /list (listing.entry_of)."""
        ...

    def info(self, stream_id: str) -> StreamInfo:
        """Raises StreamNotFound."""
        ...

    def stop(self, stream_id: str, geometry: GridGeometry | None) -> bytes:
        """Stops (if running) and returns the grid JPEG. Raises StreamNotFound,
        NoFramesCaptured, GridFailed, StoreUnavailable (nothing stopped)."""
        ...

    def stop_all(self) -> dict[str, str]: ...

    def kept_frames(self, stream_id: str) -> list[FrameRecord]:
        """The stream's kept frames as its store holds them now, brightest
        first (at most top_k). Raises StreamNotFound, StoreUnavailable."""
        ...

    def frame_jpeg(self, stream_id: str, record: FrameRecord) -> bytes | None:
        """One kept frame's JPEG; None when it is no longer kept. Raises
        StreamNotFound, StoreUnavailable."""
        ...

    def close(self) -> None: ...


# The store reads behind kept_frames and frame_jpeg, the same in both runtimes.
def read_kept_frames(store: FrameStore, stream_id: str, top_k: int) -> list[FrameRecord]:
    try:
        # A listing may hold a frame the worker is about to delete: best() bounds it.
        return best(store.list_frames(stream_id), top_k)
    except StoreError as exc:
        raise StoreUnavailable(store_error_text(exc)) from exc


def read_frame(store: FrameStore, stream_id: str, record: FrameRecord) -> bytes | None:
    try:
        return store.get_frame(stream_id, record)
    except StoreError as exc:  # a 503 with the store's reason
        raise StoreUnavailable(store_error_text(exc)) from exc
