"""The operator's Prometheus metrics: reconciles by outcome, and how long
they take (docs/metrics.md).

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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

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


def serve_metrics(
    port: int, host: str = "127.0.0.1", metrics: OperatorMetrics | None = None
) -> OperatorMetrics:
    """Serves ``metrics`` (new ones if None) at ``http://host:port/metrics``
    from a daemon thread; returns them. OSError when the port is taken."""
    metrics = metrics or OperatorMetrics()
    start_http_server(port, addr=host, registry=metrics.registry)
    return metrics
