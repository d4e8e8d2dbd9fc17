"""The capture worker's liveness endpoint, for the kubelet's probe.

``GET /healthz`` answers 200 while the capture loop beats (each packet read,
each connection attempt, each reconnect wait) and 503 once it has not for
``stale_after`` seconds: a camera that is down is not a dead worker (the loop
keeps beating while it reconnects), and so is every finished store call (a
slow store is not a dead worker either). Off unless ``STREAMGRID_HEALTH_PORT``
is set; the kubelet probes the pod's IP, so the pod binds every address, IPv4
and IPv6.

``GET /metrics`` on the same port is the worker's Prometheus exposition
(capture/metrics.py), for the chart's scrape annotations.

The server reads a request line and its headers and answers with
``Connection: close``: a probe and a scraper need no more, and http.server
with what it imports would cost every capture pod 0.7 MB of memory.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

from ..core.stores.base import ObjectStore
from .settings import CaptureSettings

# What one store call may take (boto3: 5 s connect + 15 s read, retried) on
# top of the longest wait of the loop itself.
STORE_CALL_BOUND = 60.0
# What a request may send before the answer: longer lines are cut, more headers unread.
MAX_LINE = 8192
MAX_HEADERS = 100
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class Heartbeat:
    """When the capture loop last made progress (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()  # one float store: atomic under the GIL

    def age(self) -> float:
        return self._clock() - self._last


class BeatingObjects(ObjectStore):
    """An ObjectStore whose every finished call is a beat: a loop busy with a
    slow store (each call bounded by STORE_CALL_BOUND) is alive, one stuck in
    a single call for longer is not."""

    def __init__(self, inner: ObjectStore, heartbeat: Heartbeat) -> None:
        self.inner, self.heartbeat = inner, heartbeat

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self.inner.put(key, data, content_type)
        finally:
            self.heartbeat.beat()

    def get(self, key: str) -> bytes | None:
        try:
            return self.inner.get(key)
        finally:
            self.heartbeat.beat()

    def delete(self, key: str) -> None:
        try:
            self.inner.delete(key)
        finally:
            self.heartbeat.beat()

    def list(self, prefix: str) -> Iterator[str]:
        for key in self.inner.list(prefix):
            self.heartbeat.beat()
            yield key
        self.heartbeat.beat()

    def describe(self) -> str:
        return self.inner.describe()

    def ensure_ready(self) -> None:
        self.inner.ensure_ready()


def stale_after(settings: CaptureSettings) -> float:
    """The longest a healthy loop goes without a beat: its longest single wait
    (a connection attempt, a read, the picture watchdog, a backoff with its
    +20 % jitter) plus one store call."""
    longest = max(
        settings.open_timeout + settings.probe_seconds,
        settings.read_timeout,
        settings.no_frame_timeout,
        settings.backoff_max * 1.2,
    )
    return longest + STORE_CALL_BOUND


Answer = tuple[int, bytes, str]  # status, body, content type


class HealthServer:
    """A one-thread HTTP server (the probe is the only client) in a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        heartbeat: Heartbeat,
        stale_after: float,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
    ) -> None:
        """``metrics``: the body and content type of ``GET /metrics`` (404 without)."""
        limit = stale_after

        def answer(method: bytes, target: str) -> Answer:
            if method != b"GET":
                return 501, b"unsupported method\n", "text/plain"
            path = urlsplit(target).path
            if path == "/metrics" and metrics is not None:
                return (200, *metrics())
            if path != "/healthz":
                return 404, b"not found\n", "text/plain"
            if heartbeat.age() <= limit:
                return 200, b"ok\n", "text/plain"
            return 503, b"capture loop stalled\n", "text/plain"

        class Handler(socketserver.StreamRequestHandler):
            timeout = 5  # a client that stalls mid-request does not hold the server

            def handle(self) -> None:
                try:
                    request = self.rfile.readline(MAX_LINE + 1)
                    for _ in range(MAX_HEADERS):  # headers: read, not needed
                        if self.rfile.readline(MAX_LINE + 1) in (b"\r\n", b"\n", b""):
                            break
                except OSError:  # a stalled or vanished client
                    return
                parts = request.split()
                if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
                    code, body, content_type = 400, b"bad request\n", "text/plain"
                else:
                    code, body, content_type = answer(parts[0], parts[1].decode("latin-1"))
                head = (
                    f"HTTP/1.1 {code} {REASONS.get(code, '')}\r\n"
                    f"Content-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n"
                )
                with contextlib.suppress(OSError):
                    self.wfile.write(head.encode("latin-1") + body)

        self._server = _server_for(host, port, Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(socketserver.TCPServer):
    allow_reuse_address = True  # as http.server's: a restarted worker rebinds at once


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _DualStackServer(_IPv6Server):
    """IPV6_V6ONLY off: on '::', probes reach it over IPv4 and IPv6 alike
    (single-stack IPv6 clusters included)."""

    def server_bind(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


WILDCARDS = ("", "::", "0.0.0.0")


def _server_for(host: str, port: int, handler: type[socketserver.BaseRequestHandler]) -> _Server:
    """Both stacks for a wildcard host where the kernel has IPv6, else IPv4;
    an IPv6 address as given."""
    if host in WILDCARDS and socket.has_ipv6:
        try:
            return _DualStackServer(("::", port), handler)
        except OSError:  # IPv6 disabled in this network namespace
            pass
    if ":" in host:
        return _IPv6Server((host, port), handler)
    return _Server((host or "0.0.0.0", port), handler)
