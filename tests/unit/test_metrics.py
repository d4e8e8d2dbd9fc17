"""Prometheus metrics: the worker's plain counters and their exposition, the
gateway's request counting (route templates, 401s, the public switch), and
the operator's reconcile metrics. The gateway runs over a real LocalBackend
on a directory store; no worker is started here (tests/e2e/test_metrics.py
does that, with the real camera)."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client import generate_latest as exposition_of
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from streamgrid.capture.decoding import Picture
from streamgrid.capture.health import HealthServer, Heartbeat
from streamgrid.capture.metrics import process_families, tcp_bytes_received, worker_exposition
from streamgrid.capture.progress import Progress
from streamgrid.capture.sampling import Arrival, DecodeMode, TickSampler
from streamgrid.capture.settings import CaptureSettings
from streamgrid.capture.worker import CaptureWorker
from streamgrid.core.capture_metrics import Family, exposition, go_float, worker_families
from streamgrid.core.models import StreamState
from streamgrid.core.stores.directory import DirectoryObjectStore
from streamgrid.core.stores.frames import FrameStore
from streamgrid.core.worker_metrics import (
    DURATION_BUCKETS,
    RECONNECT_REASONS,
    Histogram,
    WorkerCollector,
    WorkerMetrics,
    prometheus_family,
    reconnect_reason,
)
from streamgrid.gateway.app import create_app
from streamgrid.gateway.auth import Authenticator, StaticTokens
from streamgrid.gateway.local import LocalBackend, LocalStream
from streamgrid.gateway.metrics import METHODS, UNMATCHED
from streamgrid.gateway.requests import StartRequest
from streamgrid.gateway.settings import GatewaySettings
from streamgrid.operator.metrics import OperatorMetrics, serve_metrics
from testbed.processes import free_port

TOKEN = "metrics-test-token"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


# -- the worker's counters -----------------------------------------------------


def test_a_histogram_puts_a_value_on_a_bound_in_that_bucket_and_counts_every_value() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    assert h.counts == [2, 2, 1]
    assert h.cumulative() == [("0.1", 2.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert h.total == pytest.approx(8.65)


def test_reconnect_reasons_are_a_fixed_set() -> None:
    assert reconnect_reason("Connection refused") == "refused"
    assert reconnect_reason("timed out after 5.0 s (Immediate exit requested)") == "timeout"
    assert reconnect_reason("the stream ended") == "eof"
    assert reconnect_reason("no picture decoded for 10 s") == "no_picture"
    assert reconnect_reason("401 Unauthorized: camera said no <script>") == "error"
    metrics = WorkerMetrics()
    metrics.reconnected("Connection refused")
    metrics.reconnected("anything at all")
    assert set(metrics.reconnects) == set(RECONNECT_REASONS)
    assert metrics.reconnects["refused"] == 1 and metrics.reconnects["error"] == 1


def test_a_snapshot_survives_its_json_and_garbage_is_refused() -> None:
    metrics = WorkerMetrics(samples=5, decodes=7, keyframes_decoded=2)
    metrics.decode_seconds.observe(0.003)
    metrics.link_read(100, 1, 5000)
    metrics.reconnected("the stream ended")
    back = WorkerMetrics.from_json(json.loads(json.dumps(metrics.to_json())))
    assert back.to_json() == metrics.to_json()
    assert (back.packets_received, back.packets_dropped, back.bytes_received) == (100, 1, 5000)

    bad: object
    for bad in (
        None,
        [],
        {**metrics.to_json(), "samples": -1},
        {**metrics.to_json(), "samples": True},
        {**metrics.to_json(), "decode_seconds": {"counts": [1], "sum": 0.1}},
        {**metrics.to_json(), "reconnects": "many"},
    ):
        with pytest.raises(ValueError):
            WorkerMetrics.from_json(bad)
    # A reason outside the fixed set never becomes a label.
    odd = WorkerMetrics.from_json({**metrics.to_json(), "reconnects": {"surprise": 3}})
    assert set(odd.reconnects) == set(RECONNECT_REASONS)


def test_connections_and_workers_add_up_without_going_back() -> None:
    metrics = WorkerMetrics()
    metrics.link_read(10, 0, 1000)
    metrics.link_closed()  # a reconnect
    metrics.link_read(3, 1, 200)
    assert (metrics.packets_received, metrics.packets_dropped, metrics.bytes_received) == (
        13,
        1,
        1200,
    )
    later = WorkerMetrics(samples=4)
    later.add(metrics)
    later.add(WorkerMetrics(samples=1))
    assert later.samples == 5 and later.packets_received == 13


def test_the_kernel_counts_a_tcp_connections_bytes() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as client:
        server, _ = listener.accept()
        with server:
            before = tcp_bytes_received(client)
            assert before == 0
            server.sendall(b"x" * 5000)
            got = 0
            while got < 5000:
                got += len(client.recv(65536))
            assert tcp_bytes_received(client) == 5000


class CountingDecoder:
    def __init__(self) -> None:
        self.fed: list[object] = []

    def decode(self, packet: object) -> list[object]:
        self.fed.append(packet)
        return [f"picture-{packet}"]

    def drain(self) -> list[object]:
        return []

    def reset(self) -> None:
        pass


def test_the_sampler_times_each_decode_and_says_which_were_keyframes() -> None:
    observed: list[tuple[float, bool]] = []
    sampler = TickSampler(
        CountingDecoder(),
        1.0,
        DecodeMode.LAZY,
        started=0.0,
        observe_decode=lambda s, k: observed.append((s, k)),
    )
    for i in range(4):  # a keyframe, then three others; ticks at 0 and 1.0
        sampler.offer(Arrival(i, i == 0, i * 0.25, i * 0.25, live=True))
    assert sampler.samples == 1 and sampler.decodes == 1
    sampler.offer(Arrival(4, False, 1.3, 1.3, live=True))  # 0.3 s after the tick at 1.0
    assert sampler.samples == 2
    assert [k for _, k in observed] == [True, False, False, False, False]
    assert all(s >= 0 for s, _ in observed)
    assert sampler.last_lag == pytest.approx(0.3)


class Reports:
    def __init__(self) -> None:
        self.reports: list[Progress] = []

    def report(self, progress: Progress) -> None:
        self.reports.append(progress)

    def close(self, timeout: float = 10.0) -> None:
        pass


def picture(level: int) -> Picture:
    return Picture(av.VideoFrame.from_ndarray(np.full((48, 64), level, np.uint8), format="gray"))


def test_a_worker_counts_samples_and_encodes_and_reports_them_throttled(tmp_path: Path) -> None:
    reports = Reports()
    settings = CaptureSettings(
        stream_id="s", source_url="rtsp://127.0.0.1:9/x", top_k=2, progress="none"
    )
    worker = CaptureWorker(settings, FrameStore(DirectoryObjectStore(tmp_path)), reports)
    worker.state = StreamState.ACTIVE
    for level in (10, 20, 30, 5):
        worker.sample(picture(level))
    assert worker.metrics.samples == 4
    assert sum(worker.metrics.jpeg_seconds.counts) == 3  # 5 never entered the top 2
    with_metrics = [r.metrics for r in reports.reports if r.metrics is not None]
    assert len(with_metrics) == 1 and with_metrics[0]["samples"] == 1  # once a second at most
    worker.finish(StreamState.STOPPED)
    final = reports.reports[-1]
    assert final.metrics is not None and final.metrics["samples"] == 4  # always in the last
    # A progress line carries them; equality (the cluster's "anything new?") ignores them.
    line = json.loads(json.dumps(final.to_json()))
    assert line["metrics"]["samples"] == 4
    assert dataclasses.replace(final, metrics=None) == final


def test_a_workers_exposition_is_labelled_by_stream_and_served_on_the_health_port() -> None:
    metrics = WorkerMetrics(samples=3, decodes=9, keyframes_decoded=3)
    metrics.decode_seconds.observe(0.004)
    metrics.reconnected("Connection refused")
    metrics.link_read(40, 2, 12345)
    health = HealthServer(
        "127.0.0.1", 0, Heartbeat(), 30.0, worker_exposition("cam-1", metrics)
    ).start()
    try:
        url = f"http://127.0.0.1:{health.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            text = response.read().decode()
    finally:
        health.close()
    assert value(text, "streamgrid_capture_samples_total", stream_id="cam-1") == 3
    assert value(text, "streamgrid_capture_keyframes_decoded_total", stream_id="cam-1") == 3
    assert value(text, "streamgrid_capture_bytes_received_total", stream_id="cam-1") == 12345
    assert value(text, "streamgrid_capture_packets_dropped_total", stream_id="cam-1") == 2
    assert (
        value(text, "streamgrid_capture_reconnects_total", stream_id="cam-1", reason="refused") == 1
    )
    assert value(text, "streamgrid_capture_decode_seconds_count", stream_id="cam-1") == 1
    assert (
        value(text, "streamgrid_capture_decode_seconds_bucket", stream_id="cam-1", le="0.005") == 1
    )
    assert len(DURATION_BUCKETS) + 1 == sum(
        1 for name, _ in samples(text) if name == "streamgrid_capture_decode_seconds_bucket"
    )
    assert "process_cpu_seconds_total" in text


def test_a_pods_own_exposition_is_the_text_prometheus_client_writes() -> None:
    """The worker renders its text without prometheus_client: the same bytes
    its registry gives for the same families, odd label values, large
    counts and histograms included."""
    busy = WorkerMetrics(samples=12_345_678, decodes=3, keyframes_decoded=1)
    for seconds in (0.0005, 0.004, 0.004, 7.0):
        busy.decode_seconds.observe(seconds)
    busy.link_read(2**40, 7, 98_765_432_109)
    busy.reconnected("timed out")
    snapshots = {"cam-1": busy, "cam-2": WorkerMetrics()}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(lambda: snapshots))
    assert exposition(worker_families(snapshots)) == exposition_of(registry)

    odd = Family(
        "odd_gauge",
        "gauge",
        "A help text with a \\ and a\nnew line.",
        [((("path", 'a "quoted" \\ path\n'),), 1e21), ((("path", "x"),), float("nan"))],
    )

    class Odd(Collector):
        def collect(self) -> Iterator[Metric]:
            yield prometheus_family(odd)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Odd())
    assert exposition([odd]) == exposition_of(registry)
    assert [go_float(v) for v in (0.004, 12345.0, 1234567.0, float("inf"))] == [
        "0.004",
        "12345.0",
        "1.234567e+06",
        "+Inf",
    ]


def test_a_pods_process_numbers_are_the_ones_prometheus_client_gives() -> None:
    ours = {
        family.name: family
        for family in text_string_to_metric_families(exposition(process_families()).decode())
    }
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    theirs = {
        family.name: family
        for family in text_string_to_metric_families(exposition_of(registry).decode())
    }
    assert set(ours) == set(theirs) and len(ours) == 6
    for name, family in ours.items():
        assert family.type == theirs[name].type, name
    ours_value = {name: family.samples[0].value for name, family in ours.items()}
    theirs_value = {name: family.samples[0].value for name, family in theirs.items()}
    assert ours_value["process_start_time_seconds"] == pytest.approx(
        theirs_value["process_start_time_seconds"], abs=1.0
    )
    assert ours_value["process_max_fds"] == theirs_value["process_max_fds"]
    assert ours_value["process_resident_memory_bytes"] == pytest.approx(
        theirs_value["process_resident_memory_bytes"], rel=0.2
    )
    assert 0 < ours_value["process_cpu_seconds"] <= theirs_value["process_cpu_seconds"] + 0.5


# -- the gateway ---------------------------------------------------------------


@pytest.fixture
def backend_settings(tmp_path: Path) -> GatewaySettings:
    return GatewaySettings(store_url=str(tmp_path / "data"), state_dir=tmp_path / "state")


def client_for(settings: GatewaySettings, token: bool, public: bool | None) -> TestClient:
    store = settings.open_store()
    authenticator = Authenticator([StaticTokens([TOKEN])]) if token else None
    app = create_app(lambda: LocalBackend(settings, store), authenticator, metrics_public=public)
    return TestClient(app, base_url="http://127.0.0.1")  # a Host the server answers to


@pytest.fixture
def gateway(backend_settings: GatewaySettings) -> Iterator[TestClient]:
    with client_for(backend_settings, token=True, public=False) as client:
        yield client


def scrape(client: TestClient) -> str:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return str(response.text)


def test_requests_are_counted_by_route_template_with_401s_and_404s(gateway: TestClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert gateway.post("/status/0123456789abcdef", headers=auth).status_code == 404
    assert gateway.post("/status/fedcba9876543210", headers=auth).status_code == 404
    assert gateway.post("/status/0123456789abcdef").status_code == 401  # no token
    assert gateway.get("/no/such/path", headers=auth).status_code == 404
    assert gateway.request("BREW", "/list", headers=auth).status_code == 405
    text = scrape(gateway)
    requests = "streamgrid_http_requests_total"
    assert value(text, requests, route="/status/{stream_id}", method="POST", code="404") == 2
    assert value(text, requests, route="/status/{stream_id}", method="POST", code="401") == 1
    assert value(text, requests, route=UNMATCHED, method="GET", code="404") == 1
    assert value(text, requests, route="/list", method="other", code="405") == 1
    # No raw id, and no method a client made up, is ever a label.
    assert "0123456789abcdef" not in text and "BREW" not in text
    assert all(
        dict(labels)["method"] in METHODS | {"other"}
        for (n, labels) in samples(text)
        if n == requests
    )
    latency = "streamgrid_http_request_duration_seconds_count"
    assert value(text, latency, route="/status/{stream_id}", method="POST") == 3


def test_metrics_follow_authentication_unless_public(
    backend_settings: GatewaySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with client_for(backend_settings, token=True, public=False) as client:
        assert client.get("/metrics").status_code == 401
    monkeypatch.setenv("STREAMGRID_METRICS_PUBLIC", "true")  # what the chart sets
    with client_for(backend_settings, token=True, public=None) as client:
        assert client.get("/metrics").status_code == 200
    monkeypatch.delenv("STREAMGRID_METRICS_PUBLIC")
    with client_for(backend_settings, token=True, public=True) as client:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert "streamgrid_streams" in response.text
        assert client.get("/list").status_code == 401  # only /metrics is public
        # The public answer is counted too (by the next scrape).
        text = client.get("/metrics").text
        requests = "streamgrid_http_requests_total"
        assert value(text, requests, route="/metrics", method="GET", code="200") == 1


def test_metrics_are_not_in_the_openapi_document(gateway: TestClient) -> None:
    assert "/metrics" not in gateway.get("/openapi.json").json()["paths"]


def test_streams_by_state_and_each_workers_numbers_labelled_by_stream(
    gateway: TestClient,
) -> None:
    backend: LocalBackend = gateway.app.state.backend  # type: ignore[attr-defined]
    stream = LocalStream("00000000000000aa", StartRequest("rtsp://cam/x"), "rtsp://cam/x")
    stream.state = StreamState.ACTIVE
    backend._streams[stream.stream_id] = stream
    first = WorkerMetrics(samples=5)
    first.link_read(50, 0, 1000)
    progress = {"state": "Active", "frames_captured": 5, "kept": 1}
    on_progress = backend.supervisor.on_progress
    on_progress(stream, json.dumps({**progress, "metrics": first.to_json()}))
    on_progress(stream, json.dumps({**progress, "metrics": {"samples": "x"}}))  # ignored
    text = scrape(gateway)
    assert value(text, "streamgrid_streams", state="Active") == 1
    assert value(text, "streamgrid_streams", state="Stopped") == 0
    labels = {"stream_id": stream.stream_id}
    assert value(text, "streamgrid_capture_samples_total", **labels) == 5

    # The worker ends and a new one starts from zero: the stream's counters go on.
    stream.worker_numbers = (stream.worker_metrics(), None)
    on_progress(stream, json.dumps({**progress, "metrics": WorkerMetrics(samples=2).to_json()}))
    text = scrape(gateway)
    assert value(text, "streamgrid_capture_samples_total", **labels) == 7
    assert value(text, "streamgrid_capture_bytes_received_total", **labels) == 1000
    backend._streams.pop(stream.stream_id)


# -- the operator --------------------------------------------------------------


def test_reconciles_are_counted_by_outcome_and_timed() -> None:
    metrics = OperatorMetrics()
    with metrics.reconcile():
        pass
    with metrics.reconcile() as outcome:
        outcome.set("retry")
    with pytest.raises(RuntimeError), metrics.reconcile():
        raise RuntimeError("the API server is down")
    with pytest.raises(ValueError):
        metrics.reconciled("maybe", 1.0)  # type: ignore[arg-type]
    port = free_port()
    serve_metrics(port, metrics=metrics)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for outcome_name in ("ok", "retry", "error"):
        assert value(text, "streamgrid_operator_reconciles_total", outcome=outcome_name) == 1
    assert value(text, "streamgrid_operator_reconcile_duration_seconds_count") == 3


# -- the docs ------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_metric_is_documented_and_the_dashboard_queries_only_real_ones(
    gateway: TestClient,
) -> None:
    texts = (
        scrape(gateway),
        worker_exposition("s", WorkerMetrics())()[0].decode(),
        exposition_of(OperatorMetrics().registry).decode(),
    )
    # The parser names a counter's family without its _total; the docs name samples.
    exposed = {
        family.name + ("_total" if family.type == "counter" else "")
        for text in texts
        for family in text_string_to_metric_families(text)
        if family.name.startswith("streamgrid_")
    }
    assert len(exposed) >= 17
    doc = (DOCS / "metrics.md").read_text()
    assert [name for name in sorted(exposed) if f"`{name}`" not in doc] == []
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    queried = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"streamgrid_[a-z_]+", target["expr"])
    }
    assert len(queried) >= 10 and queried <= exposed, queried - exposed
