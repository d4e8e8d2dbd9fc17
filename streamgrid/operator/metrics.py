"""The operator's Prometheus metrics (docs/metrics.md): reconciles by
outcome and how long they take; whether this replica leads; each stream's
state, store trouble and pod recreations (what the chart's alerts read).

The handlers time each reconcile::

    metrics = serve_metrics(settings.metrics_port)
    ...
    with metrics.reconcile() as outcome:
        ...                      # "ok" unless told otherwise
        outcome.set("retry")     # e.g. kopf.TemporaryError on its way out

An exception that leaves the block is counted as "error" (and goes on),
unless the block set another outcome first.
``serve_metrics`` serves them on 127.0.0.1 unless told another address: the
operator's pod needs no open port for them unless one is configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Literal, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core.models import StreamState

# (namespace, name) -> (state, desired Running, store error, pods recreated):
# Controller.stream_states
StreamStates = Callable[[], Mapping[tuple[str, str], tuple[str, bool, bool, int]]]

Outcome = Literal["ok", "retry", "error"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
# Seconds: a reconcile is a few API calls; a slow API server takes seconds.
RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OutcomeOf:
    """What one reconcile ended in; "ok" unless set."""

    def __init__(self) -> None:
        self.value: Outcome = "ok"

    def set(self, outcome: Outcome) -> None:
        self.value = outcome


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No *_created series beside each counter and histogram: they double
        # the series for nothing a rate() needs (prometheus_client's switch is
        # process-wide, and the same for every registry here).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.reconciles = Counter(
            "streamgrid_operator_reconciles",
            "VideoStream reconciles, by outcome (ok, retry, error).",
            ["outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "streamgrid_operator_reconcile_duration_seconds",
            "Time one VideoStream reconcile took.",
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.reconciles.labels(outcome)  # every series from the start, at 0
        self.leader = Gauge(
            "streamgrid_operator_leader",
            "1 while this replica holds the leader Lease and reconciles, else 0.",
            registry=self.registry,
        )
        self.delete_failures = Counter(
            "streamgrid_operator_data_delete_failures",
            "Deleted streams whose data the operator gave up deleting from the store.",
            registry=self.registry,
        )
        self.delete_failures.inc(0)

    def watch_streams(self, states: StreamStates, leading: Callable[[], bool]) -> None:
        """Each stream's state, store trouble and recreations, read from the
        controller's index at scrape time; served by the leader only (one
        series a stream in all)."""
        self.registry.register(StreamCollector(states, leading))

    def leading(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def data_delete_abandoned(self) -> None:
        self.delete_failures.inc()

    def reconciled(self, outcome: Outcome, seconds: float) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown reconcile outcome {outcome!r}")
        self.reconciles.labels(outcome).inc()
        self.duration.observe(seconds)

    @contextmanager
    def reconcile(self) -> Iterator[OutcomeOf]:
        outcome = OutcomeOf()
        started = time.perf_counter()
        try:
            yield outcome
        except BaseException:
            if outcome.value == "ok":  # a "retry" set before raising stays one
                outcome.set("error")
            raise
        finally:
            self.reconciled(outcome.value, time.perf_counter() - started)


class StreamCollector(Collector):
    """``streamgrid_stream_state{namespace, stream, state}`` 1 for each
    stream's current state (one series a stream), and beside it whether it
    should run, whether its store refuses frames, and how many of its pods
    this leader recreated (0 from the start, so increase() sees the first)."""

    def __init__(self, states: StreamStates, leading: Callable[[], bool]) -> None:
        self.states, self.leading = states, leading

    def collect(self) -> Iterator[Metric]:
        if not self.leading():
            return
        labels = ["namespace", "stream"]
        state = GaugeMetricFamily(
            "streamgrid_stream_state",
            "1 for the stream's current state (" + ", ".join(StreamState) + ").",
            labels=[*labels, "state"],
        )
        desired = GaugeMetricFamily(
            "streamgrid_stream_desired_running",
            "1 when the stream's spec.state is Running, 0 when Stopped.",
            labels=labels,
        )
        store = GaugeMetricFamily(
            "streamgrid_stream_store_error",
            "1 while the capture pod reports the store refusing its frames.",
            labels=labels,
        )
        recreations = CounterMetricFamily(
            "streamgrid_stream_pod_recreations",
            "Capture pods recreated after an exit or a loss (not for an edit or an upgrade).",
            labels=labels,
        )
        for (namespace, name), (current, running, store_error, made) in self.states().items():
            state.add_metric([namespace, name, current], 1.0)
            desired.add_metric([namespace, name], 1.0 if running else 0.0)
            store.add_metric([namespace, name], 1.0 if store_error else 0.0)
            recreations.add_metric([namespace, name], float(made))
        yield state
        yield desired
        yield store
        yield recreations


def serve_metrics(
    port: int, host: str = "127.0.0.1", metrics: OperatorMetrics | None = None
) -> OperatorMetrics:
    """Serves ``metrics`` (new ones if None) at ``http://host:port/metrics``
    from a daemon thread; returns them. OSError when the port is taken."""
    metrics = metrics or OperatorMetrics()
    start_http_server(port, addr=host, registry=metrics.registry)
    return metrics
