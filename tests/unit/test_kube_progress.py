"""KubeStatusProgress: bounded rate, state changes at once, the last word always sent."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from streamgrid.capture.kube_progress import (
    ApiError,
    KubeStatusProgress,
    StatusEndpoint,
    frames_captured_floor,
    requested_interval,
    status_of,
)
from streamgrid.capture.progress import Progress
from streamgrid.core.models import StreamState
from testbed.processes import wait_until


class SlowEndpoint:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sent: list[dict[str, Any]] = []

        self.lock = threading.Lock()

    def patch(self, status: dict[str, Any]) -> float | None:
        time.sleep(self.delay)
        with self.lock:
            self.sent.append(status)
        return self.requested

    requested: float | None = None
    stopping = True  # what the stream's spec says when the pod stops

    def stop_wanted(self) -> bool:
        return self.stopping


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


def test_the_pod_reports_counts_at_the_pace_the_operator_asks() -> None:
    """The answer to a PATCH carries status.progressIntervalSeconds (the
    fleet's pace): the next counts wait that long, state changes do not."""
    endpoint = SlowEndpoint(delay=0.0)
    endpoint.requested = 300.0
    sink = KubeStatusProgress(endpoint, interval=0.2)  # type: ignore[arg-type]
    sink.report(progress(StreamState.ACTIVE, 1))
    wait_until(lambda: len(endpoint.sent) == 1, 5, "the first report")
    wait_until(lambda: sink.interval == 300.0, 5, "the new pace")
    for frames in range(2, 50):
        sink.report(progress(StreamState.ACTIVE, frames))
    time.sleep(1.0)  # five of the old periods: counts wait for the new one
    assert len(endpoint.sent) == 1
    sink.report(progress(StreamState.RECONNECTING, 49, "camera closed the connection"))
    wait_until(lambda: len(endpoint.sent) == 2, 5, "the state change")  # at once
    sink.close()


def test_only_a_sane_period_is_taken_from_an_answer() -> None:
    assert requested_interval(b'{"status": {"progressIntervalSeconds": 120}}') == 120.0
    for answer in (
        b"not json",
        b"[]",
        b'{"status": null}',
        b'{"status": {"progressIntervalSeconds": "120"}}',
        b'{"status": {"progressIntervalSeconds": true}}',
        b'{"status": {"progressIntervalSeconds": 0.01}}',
        b'{"status": {"progressIntervalSeconds": 1e9}}',
        b'{"status": {}}',
    ):
        assert requested_interval(answer) is None, answer


def test_a_new_pace_starts_anywhere_in_its_period(monkeypatch: Any) -> None:
    """A fleet made at once would otherwise send its reports in bursts, one
    period apart: the first wait after a new pace is spread over all of it."""
    import random

    spreads: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        spreads.append((low, high))
        return low

    monkeypatch.setattr(random, "uniform", uniform)  # the module kube_progress uses
    endpoint = SlowEndpoint(delay=0.0)
    endpoint.requested = 120.0
    sink = KubeStatusProgress(endpoint, interval=0.05)  # type: ignore[arg-type]
    sink.report(progress(StreamState.ACTIVE, 1))
    wait_until(lambda: sink.interval == 120.0, 5, "the new pace")
    wait_until(lambda: (0.0, 1.0) in spreads, 5, "a wait spread over the period")
    sink.close()


def test_a_pod_stopped_to_be_replaced_says_restarting_not_stopped() -> None:
    """An edit, an upgrade or a drain replaces the pod: its stream is not
    Stopped, so its last report is not either (an alert would fire)."""
    for stopping, said in ((False, "Restarting"), (True, "Stopped")):
        endpoint = SlowEndpoint(delay=0.0)
        endpoint.stopping = stopping
        sink = KubeStatusProgress(endpoint, interval=60)  # type: ignore[arg-type]
        sink.report(progress(StreamState.ACTIVE, 5))
        sink.report(progress(StreamState.STOPPED, 6))
        sink.close()
        assert endpoint.sent[-1]["captureState"] == said
        assert endpoint.sent[-1]["framesCaptured"] == 6


class _ScriptedApi(BaseHTTPRequestHandler):
    """Answers with the server's next (status, body); records what it got."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        server: Any = self.server
        server.got.append((self.command, self.path, self.headers.get("Authorization"),
                           self.rfile.read(length)))  # fmt: skip
        code, body = server.script.pop(0)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_endpoint_talks_to_a_real_http_server(tmp_path: Path) -> None:
    """GET and PATCH with the token, the operator's pace read from the
    answer, an error status refused (a 4xx once, a 5xx retried)."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedApi)
    server.got, server.script = [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("pod-token\n")
    api = f"http://127.0.0.1:{server.server_address[1]}"
    endpoint = StatusEndpoint(api, "ns", "cam", token, None)
    try:
        server.script = [(200, b'{"status": {"framesCaptured": 57}}')]
        assert frames_captured_floor(endpoint) == 57
        server.script = [(200, b'{"status": {"progressIntervalSeconds": 30}}')]
        assert endpoint.patch({"framesCaptured": 58}) == 30.0
        path = "/apis/streamgrid.io/v1alpha1/namespaces/ns/videostreams/cam/status"
        assert [(m, p, a) for m, p, a, _ in server.got] == [
            ("GET", path, "Bearer pod-token"),
            ("PATCH", path, "Bearer pod-token"),
        ]
        assert json.loads(server.got[1][3]) == {"status": {"framesCaptured": 58}}

        server.script = [(403, b"{}")]
        assert frames_captured_floor(endpoint) == 0 and server.script == []  # asked once
        server.script = [(500, b"{}"), (503, b"{}")]
        assert frames_captured_floor(endpoint, attempts=2) == 0 and server.script == []
        server.script = [(409, b"{}")]
        with pytest.raises(ApiError, match="HTTP Error 409") as raised:
            endpoint.patch({})
        assert raised.value.code == 409
    finally:
        server.shutdown()
        server.server_close()
