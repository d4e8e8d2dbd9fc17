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
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit

from ..core.stores.base import ObjectStore
from .settings import CaptureSettings

# What one store call may take (boto3: 5 s connect + 15 s read, retried) on
# top of the longest wait of the loop itself.
STORE_CALL_BOUND = 60.0


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

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a client that stalls mid-request does not hold the server

            def do_GET(self) -> None:  # http.server's naming
                path = urlsplit(self.path).path
                if path == "/metrics" and metrics is not None:
                    self._answer(200, *metrics())
                elif path != "/healthz":
                    self._answer(404, b"not found\n")
                elif heartbeat.age() <= limit:
                    self._answer(200, b"ok\n")
                else:
                    self._answer(503, b"capture loop stalled\n")

            def _answer(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per probe would drown the worker's log

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


class _IPv6Server(HTTPServer):
    address_family = socket.AF_INET6


class _DualStackServer(_IPv6Server):
    """IPV6_V6ONLY off: on '::', probes reach it over IPv4 and IPv6 alike
    (single-stack IPv6 clusters included)."""

    def server_bind(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


WILDCARDS = ("", "::", "0.0.0.0")


def _server_for(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> HTTPServer:
    """Both stacks for a wildcard host where the kernel has IPv6, else IPv4;
    an IPv6 address as given."""
    if host in WILDCARDS and socket.has_ipv6:
        try:
            return _DualStackServer(("::", port), handler)
        except OSError:  # IPv6 disabled in this network namespace
            pass
    if ":" in host:
        return _IPv6Server((host, port), handler)
    return HTTPServer((host or "0.0.0.0", port), handler)
