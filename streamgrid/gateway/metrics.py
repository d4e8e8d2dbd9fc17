"""The gateway's Prometheus metrics (``GET /metrics``, docs/metrics.md).

Each app has a registry of its own (not prometheus_client's global one), so
that several apps in one process (the tests) count apart. Requests are
counted by an ASGI middleware outside the authentication middleware, so a
401 is counted too; the route label is the route's template
(``/status/{stream_id}``), never the path a client sent, so a client cannot
make new series.

Who may scrape: ``/metrics`` needs a token like every API route when
authentication is on, unless ``STREAMGRID_METRICS_PUBLIC=true``; then
authentication lets it through (the Host check still applies). What it shows is counts and
stream ids, never a URL or a credential.

The embedded runtime also serves its workers' numbers here (each worker
sends them in its progress lines), labelled by stream id, for the streams
that hold a slot (at most ``max_streams``); a capture pod serves its own.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import generate_latest as exposition_of
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.routing import BaseRoute, Match

from ..core.models import StreamState
from ..core.worker_metrics import WorkerCollector, WorkerMetrics

METRICS_PATH = "/metrics"
UNMATCHED = "<unmatched>"  # the route label of a path no route serves (a 404)
# Seconds: most calls take milliseconds; /stop waits for a worker and composes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COMPOSE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The method label's values: any other token a client sends is "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsSettings(BaseSettings):
    """``STREAMGRID_METRICS_PUBLIC=true``: /metrics needs no token."""

    model_config = SettingsConfigDict(env_prefix="STREAMGRID_", extra="ignore")

    metrics_public: bool = False


@runtime_checkable
class CountsStates(Protocol):
    def state_counts(self) -> Mapping[StreamState, int]:
        """Every stream the runtime knows, by state (stopped ones included)."""
        ...


@runtime_checkable
class HasWorkerMetrics(Protocol):
    def worker_metrics(self) -> Mapping[str, WorkerMetrics]:
        """Stream id -> its workers' numbers (embedded runtime)."""
        ...


class StreamsCollector(Collector):
    """``streamgrid_streams{state}``, asked of the backend at scrape time; a
    backend that cannot count stopped streams is asked for its active ones."""

    def __init__(self, backend: Callable[[], Any]) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        backend = self.backend()
        if backend is None:  # before the lifespan started it, or after
            return
        if isinstance(backend, CountsStates):
            counts = dict(backend.state_counts())
        else:
            counts = dict(Tally(info.state for info in backend.active()))
        family = GaugeMetricFamily("streamgrid_streams", "Streams by state.", labels=["state"])
        for state in StreamState:
            family.add_metric([state.value], float(counts.get(state, 0)))
        yield family


class GatewayMetrics:
    def __init__(self, backend: Callable[[], Any]) -> None:
        """``backend``: the app's StreamBackend now (None outside its lifespan)."""
        # No *_created series beside each counter and histogram: they double
        # the series for nothing a rate() needs (prometheus_client's switch is
        # process-wide, and the same for every registry here).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "streamgrid_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "streamgrid_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.compose = Histogram(
            "streamgrid_grid_compose_seconds",
            "Time to compose a grid from the store's frames (stored grids not included).",
            buckets=COMPOSE_BUCKETS,
            registry=self.registry,
        )
        self.grids = Counter(
            "streamgrid_grids",
            "Grids returned by /stop, composed now or read as stored.",
            ["source"],
            registry=self.registry,
        )
        for source in ("composed", "stored"):
            self.grids.labels(source)  # both series from the start, at 0
        self.registry.register(StreamsCollector(backend))

        def workers() -> Mapping[str, WorkerMetrics]:
            b = backend()
            return b.worker_metrics() if isinstance(b, HasWorkerMetrics) else {}

        self.registry.register(WorkerCollector(workers))

    def grid_served(self, composed_seconds: float | None) -> None:
        """A grid for /stop: composed in that many seconds, or None: stored."""
        if composed_seconds is None:
            self.grids.labels("stored").inc()
        else:
            self.grids.labels("composed").inc()
            self.compose.observe(composed_seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition (blocking: it asks the backend), and its content type."""
        return exposition_of(self.registry), CONTENT_TYPE_LATEST


def route_template(routes: list[BaseRoute], scope: dict[str, Any]) -> str:
    """The template of the route that serves (or would, but for the method)
    this request; UNMATCHED when none does."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", UNMATCHED))
        if match is Match.PARTIAL and partial is None:
            partial = str(getattr(route, "path", UNMATCHED))
    return partial or UNMATCHED


Send = Callable[[dict[str, Any]], Any]
Receive = Callable[[], Any]
App = Callable[[dict[str, Any], Receive, Send], Any]


class CountRequests:
    """ASGI middleware, outermost: counts and times every HTTP request by
    route template, method and code (401s, refusals and 500s included)."""

    def __init__(self, app: App, metrics: GatewayMetrics, routes: Callable[[], list[BaseRoute]]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = str(scope.get("method", ""))
        status = {"code": 500}  # no answer at all: the server's error handler's 500

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_template(self.routes(), scope)
            shown = method if method in METHODS else "other"
            self.metrics.requests.labels(route, shown, str(status["code"])).inc()
            self.metrics.latency.labels(route, shown).observe(time.perf_counter() - started)
