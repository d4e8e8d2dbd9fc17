"""The capture workers' numbers on a prometheus_client registry: the embedded
gateway serves every worker's (their JSON snapshots travel in progress
lines) under the names core/capture_metrics.py gives them, which a capture
pod renders without prometheus_client. The counters themselves are
re-exported from there, for the gateway and the tests.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .capture_metrics import DURATION_BUCKETS as DURATION_BUCKETS
from .capture_metrics import LAG_BUCKETS as LAG_BUCKETS
from .capture_metrics import RECONNECT_REASONS as RECONNECT_REASONS
from .capture_metrics import Family, Snapshots, worker_families
from .capture_metrics import Histogram as Histogram
from .capture_metrics import WorkerMetrics as WorkerMetrics
from .capture_metrics import reconnect_reason as reconnect_reason


def prometheus_family(family: Family) -> Metric:
    """One of our families as prometheus_client's (labels in the order the
    family's first point names them)."""
    labels = [name for name, _ in family.points[0][0]] if family.points else []
    if family.kind == "histogram":
        histogram = HistogramMetricFamily(family.name, family.help, labels=labels)
        for point, value in family.points:
            assert isinstance(value, Histogram)
            histogram.add_metric([v for _, v in point], value.cumulative(), value.total)
        return histogram
    kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
    metric = kind(family.name, family.help, labels=labels)
    for point, value in family.points:
        assert not isinstance(value, Histogram)
        metric.add_metric([v for _, v in point], value)
    return metric


class WorkerCollector(Collector):
    """Every stream's worker numbers, labelled by stream id, read at scrape
    time from ``snapshots()`` (stream id -> its WorkerMetrics)."""

    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        for family in worker_families(dict(self.snapshots())):
            yield prometheus_family(family)
