"""The capture worker's liveness endpoint: 200 while the loop beats, including
while it reconnects to a camera that is down; 503 once it stops beating."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from streamgrid.capture.health import (
    BeatingObjects,
    HealthServer,
    Heartbeat,
    _DualStackServer,
    stale_after,
)
from streamgrid.core.models import StreamState
from streamgrid.core.stores.directory import DirectoryObjectStore
from streamgrid.core.stores.frames import FrameStore
from streamgrid.operator.podspec import HEALTH_PORT, capture_pod
from streamgrid.operator.settings import OperatorSettings
from testbed.processes import wait_until
from testbed.worker import capture_settings, start_worker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def probe(server: HealthServer, path: str = "/healthz") -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[tuple[HealthServer, Heartbeat]]:
    heartbeat = Heartbeat(clock)
    health = HealthServer("127.0.0.1", 0, heartbeat, stale_after=30.0).start()
    yield health, heartbeat
    health.close()


def test_ok_while_the_loop_beats_and_503_once_it_stalls(
    server: tuple[HealthServer, Heartbeat], clock: FakeClock
) -> None:
    health, heartbeat = server
    assert probe(health) == 200
    clock.now += 29.0
    assert probe(health) == 200
    clock.now += 2.0  # 31 s without a beat
    assert probe(health) == 503
    heartbeat.beat()
    assert probe(health) == 200
    assert probe(health, "/other") == 404


def test_the_threshold_outlasts_every_wait_of_a_healthy_loop() -> None:
    settings = capture_settings("rtsp://cam/x", backoff_max=30.0, open_timeout=10.0)
    assert stale_after(settings) > max(30.0 * 1.2, 10.0 + settings.probe_seconds, 10.0)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_worker_reconnecting_to_a_dead_camera_stays_alive(tmp_path: Path) -> None:
    """The camera refuses every connection: the worker keeps reconnecting, and
    each attempt beats, so the probe does not kill a worker that is doing its job."""
    settings = capture_settings(f"rtsp://127.0.0.1:{closed_port()}/x", backoff_max=0.5)
    store = FrameStore(DirectoryObjectStore(tmp_path))
    running = start_worker(settings, store)
    try:
        running.wait_for(lambda p: p.state is StreamState.RECONNECTING, 30, "reconnecting")
        rounds = len(running.progress.reports)
        started = time.monotonic()
        wait_until(lambda: len(running.progress.reports) >= rounds + 5, 30, "5 more attempts")
        # Seconds of reconnecting, yet the last beat is under one round old.
        assert time.monotonic() - started > 1.0
        assert running.worker.heartbeat.age() < 0.5 * 1.2 + 0.5
    finally:
        assert running.stop() == 0


def test_the_capture_pod_has_a_liveness_probe_on_the_workers_port() -> None:
    stream = {
        "metadata": {"name": "cam-1", "namespace": "ns", "uid": "u"},
        "spec": {"source": {"url": "rtsp://cam/x"}},
    }
    pod = capture_pod(stream, OperatorSettings(store_url="s3://bucket/frames"))
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STREAMGRID_HEALTH_PORT"] == str(HEALTH_PORT)
    assert container["ports"] == [{"name": "health", "containerPort": HEALTH_PORT}]
    probe_spec = container["livenessProbe"]
    assert probe_spec["httpGet"] == {"path": "/healthz", "port": "health"}
    # The kubelet gives up after failureThreshold periods: well past a slow start.
    assert probe_spec["periodSeconds"] * probe_spec["failureThreshold"] >= 30


def test_every_finished_store_call_is_a_beat(tmp_path: Path) -> None:
    """A loop busy with a slow store is alive: each call that ends beats."""
    now = [0.0]
    heartbeat = Heartbeat(clock=lambda: now[0])
    objects = BeatingObjects(DirectoryObjectStore(tmp_path), heartbeat)
    for call in (
        lambda: objects.put("s/a", b"x", "text/plain"),
        lambda: objects.get("s/a"),
        lambda: list(objects.list("s/")),
        lambda: objects.delete("s/a"),
    ):
        now[0] += 50.0
        assert heartbeat.age() == 50.0
        call()
        assert heartbeat.age() == 0.0


def test_the_probe_answers_over_ipv4_and_ipv6() -> None:
    """On loopback only: IPv6 as given, and the dual-stack socket (IPV6_V6ONLY
    off, what a wildcard host gets) reached by an IPv4 client through its
    mapped address."""
    ipv6 = HealthServer("::1", 0, Heartbeat(), 60.0).start()
    dual = _DualStackServer(("::ffff:127.0.0.1", 0), BaseHTTPRequestHandler)
    try:
        with urllib.request.urlopen(f"http://[::1]:{ipv6.port}/healthz", timeout=5) as reply:
            assert reply.status == 200
        port = dual.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # accepted: IPv4 reaches the IPv6 socket
    finally:
        ipv6.close()
        dual.server_close()


def raw_request(server: HealthServer, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_request_it_cannot_read_or_serve_gets_a_plain_error(
    server: tuple[HealthServer, Heartbeat],
) -> None:
    """The server reads a request line and its headers by hand: garbage is a
    400, another method a 501, every answer says its length and closes."""
    health, _ = server
    assert raw_request(health, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert raw_request(health, b"POST /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 501 ")
    headers = b"".join(b"X-Header-%d: %s\r\n" % (i, b"v" * 100) for i in range(50))
    answer = raw_request(health, b"GET /healthz?x=1 HTTP/1.1\r\nHost: pod\r\n" + headers + b"\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Length: 3" in head and b"Connection: close" in head and body == b"ok\n"
    assert probe(health, "/nowhere") == 404 and probe(health) == 200
