"""Plain data shared by the worker, the store and the gateway."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

STREAM_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def is_valid_stream_id(stream_id: str) -> bool:
    """Stream ids become store prefixes and (in the cluster) object names."""
    return bool(STREAM_ID_RE.match(stream_id))


class StreamState(StrEnum):
    PENDING = "Pending"  # cluster: the capture pod is not running yet
    CONNECTING = "Connecting"
    ACTIVE = "Active"
    RECONNECTING = "Reconnecting"
    STOPPING = "Stopping"  # cluster: the pod is flushing and going away
    STOPPED = "Stopped"
    FAILED = "Failed"


@dataclass(frozen=True, order=False)
class FrameRecord:
    """One kept frame: what the store key carries, so a listing rebuilds the top K."""

    seq: int  # sample number, 0-based, unique per stream
    brightness: float  # mean BT.601 luma, 0-255, rounded to 3 decimals
    captured_at: float  # unix seconds (to the millisecond) when the worker sampled it

    @property
    def rank_key(self) -> tuple[float, int]:
        """Sorts brightest first; on equal brightness the earlier frame first."""
        return (-self.brightness, self.seq)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FrameRecord:
        return cls(int(data["seq"]), float(data["brightness"]), float(data["captured_at"]))


@dataclass
class Manifest:
    """Written by the worker periodically and at stop."""

    stream_id: str
    frames_captured: int
    kept: list[FrameRecord]
    state: StreamState
    updated_at: float
    final: bool = False
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "frames_captured": self.frames_captured,
            "kept": [r.to_json() for r in self.kept],
            "state": self.state.value,
            "updated_at": self.updated_at,
            "final": self.final,
            "reason": self.reason,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            stream_id=str(data["stream_id"]),
            frames_captured=int(data["frames_captured"]),
            kept=[FrameRecord.from_json(r) for r in data.get("kept", [])],
            state=StreamState(data.get("state", StreamState.STOPPED.value)),
            updated_at=float(data.get("updated_at", 0.0)),
            final=bool(data.get("final", False)),
            reason=str(data.get("reason", "")),
            extra=dict(data.get("extra", {})),
        )


# Bounds on what a user may ask for; the gateway validates against these and
# the worker's settings enforce them again.
INTERVAL_MIN, INTERVAL_MAX, INTERVAL_DEFAULT = 0.04, 86400.0, 1.0
TOP_K_MIN, TOP_K_MAX, TOP_K_DEFAULT = 1, 100, 9
TRANSPORTS = ("tcp", "udp")
