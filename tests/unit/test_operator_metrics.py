"""The operator's per-stream series (what the chart's alerts read): the
leader serves them, one a stream, recreations at 0 from the start."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamgrid.operator.metrics import OperatorMetrics


def samples(metrics: OperatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_leader_serves_each_streams_state_and_a_standby_none() -> None:
    leading = [True]
    states = {
        ("cams", "a"): ("Active", True, False, 0),
        ("cams", "b"): ("Reconnecting", True, True, 2),
    }
    metrics = OperatorMetrics()
    metrics.watch_streams(lambda: states, lambda: leading[0])
    metrics.leading(True)
    found = samples(metrics)

    def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return name, tuple(sorted(labels.items()))

    a, b = {"namespace": "cams", "stream": "a"}, {"namespace": "cams", "stream": "b"}
    assert found[key("streamgrid_stream_state", **a, state="Active")] == 1
    assert found[key("streamgrid_stream_state", **b, state="Reconnecting")] == 1
    assert sorted(k for k in found if k[0] == "streamgrid_stream_state") == [
        key("streamgrid_stream_state", **a, state="Active"),
        key("streamgrid_stream_state", **b, state="Reconnecting"),
    ]  # one series a stream
    assert found[key("streamgrid_stream_store_error", **b)] == 1
    assert found[key("streamgrid_stream_pod_recreations_total", **a)] == 0  # there, at 0
    assert found[key("streamgrid_stream_pod_recreations_total", **b)] == 2
    assert found[("streamgrid_operator_leader", ())] == 1
    assert found[("streamgrid_operator_data_delete_failures_total", ())] == 0
    leading[0] = False
    metrics.leading(False)
    standby = samples(metrics)
    assert not [k for k in standby if k[0].startswith("streamgrid_stream_")]
    assert standby[("streamgrid_operator_leader", ())] == 0
