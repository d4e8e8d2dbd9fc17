"""KubeStatusProgress: bounded rate, state changes at once, the last word always sent."""

from __future__ import annotations

import threading
import time
from typing import Any

from streamgrid.capture.kube_progress import KubeStatusProgress, status_of
from streamgrid.capture.progress import Progress
from streamgrid.core.models import StreamState


class SlowEndpoint:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sent: list[dict[str, Any]] = []

        self.lock = threading.Lock()

    def patch(self, status: dict[str, Any]) -> None:
        time.sleep(self.delay)
        with self.lock:
            self.sent.append(status)


def progress(state: StreamState, frames: int, reason: str = "") -> Progress:
    return Progress(state, frames, min(frames, 9), 1795000000.0 if frames else None, reason)


def test_the_final_state_is_sent_even_when_close_comes_mid_send() -> None:
    endpoint = SlowEndpoint(delay=0.3)
    sink = KubeStatusProgress(endpoint, interval=60)  # type: ignore[arg-type]
    sink.report(progress(StreamState.CONNECTING, 0))
    time.sleep(0.05)  # the thread is now inside the slow PATCH of Connecting
    sink.report(progress(StreamState.FAILED, 0, "Server returned 401 Unauthorized"))
    sink.close()
    assert endpoint.sent[-1]["captureState"] == "Failed"
    assert "401" in str(endpoint.sent[-1]["captureReason"])


def test_samples_are_coalesced_between_state_changes() -> None:
    endpoint = SlowEndpoint(delay=0.0)
    sink = KubeStatusProgress(endpoint, interval=60)  # type: ignore[arg-type]
    sink.report(progress(StreamState.ACTIVE, 1))
    time.sleep(0.1)
    for frames in range(2, 200):
        sink.report(progress(StreamState.ACTIVE, frames))  # no state change: no PATCH yet
    time.sleep(0.1)
    assert len(endpoint.sent) == 1
    sink.close()
    assert len(endpoint.sent) == 2 and endpoint.sent[-1]["framesCaptured"] == 199


def test_status_fields_are_the_pods_own() -> None:
    status = status_of(progress(StreamState.ACTIVE, 5))
    assert set(status) == {"captureState", "captureReason", "framesCaptured", "kept", "lastFrameAt"}
    assert status["lastFrameAt"] == "2026-11-18T11:06:40Z"
