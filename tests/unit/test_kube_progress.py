"""KubeStatusProgress: bounded rate, state changes at once, the last word always sent."""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.error
from email.message import Message
from typing import Any

from streamgrid.capture.kube_progress import KubeStatusProgress, frames_captured_floor, status_of
from streamgrid.capture.progress import Progress
from streamgrid.core.models import StreamState

from ..support.processes import wait_until


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
    assert set(status) == {
        "captureState",
        "captureReason",
        "framesCaptured",
        "kept",
        "storeError",
        "lastFrameAt",
    }
    assert status["lastFrameAt"] == "2026-11-18T11:06:40Z"


def last_sent(endpoint: SlowEndpoint, key: str) -> Any:
    with endpoint.lock:
        return endpoint.sent[-1].get(key) if endpoint.sent else None


def test_a_store_failing_or_back_is_sent_at_once() -> None:
    """The gateway holds back a stop while the store fails: it must hear of it
    (and of the recovery) without waiting out the interval."""
    endpoint = SlowEndpoint(delay=0.0)
    sink = KubeStatusProgress(endpoint, interval=60)  # type: ignore[arg-type]
    sink.report(progress(StreamState.ACTIVE, 1))
    failing = Progress(StreamState.ACTIVE, 2, 1, 1795000000.0, "store: No space left on device")
    failing = dataclasses.replace(failing, unsaved=1, store_error="No space left on device")
    sink.report(failing)
    wait_until(lambda: last_sent(endpoint, "storeError") == "No space left on device", 5, "PATCH")
    assert endpoint.sent[-1]["kept"] == 1
    sink.report(progress(StreamState.ACTIVE, 3))
    wait_until(lambda: last_sent(endpoint, "storeError") == "", 5, "a PATCH")
    sink.close()


class ForbiddenEndpoint:
    def __init__(self) -> None:
        self.calls = 0

    def frames_captured(self) -> int:
        self.calls += 1
        raise urllib.error.HTTPError("https://api/status", 403, "Forbidden", Message(), None)


def test_a_status_that_cannot_be_read_gives_no_floor_and_no_retries_on_a_4xx() -> None:
    endpoint = ForbiddenEndpoint()
    assert frames_captured_floor(endpoint, attempts=3) == 0  # type: ignore[arg-type]
    assert endpoint.calls == 1
