"""/metrics of a real `streamgrid serve` (embedded runtime) with the real
test camera: scraped before and after a stream's start, samples and stop, the
gateway's counters and its worker's numbers (sent up the progress pipe) move."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from testbed.api import start, wait_for
from testbed.camera import Camera
from testbed.processes import free_port, wait_until
from testbed.server import Server

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_gateway_and_worker_counters_move_with_a_stream(server: Server, camera: Camera) -> None:
    requests = "streamgrid_http_requests_total"
    with server.client() as client:
        before = scrape(client)
        stream_id = start(client, camera.url("/gray"), capture_interval=0.2)
        wait_for(client, stream_id, lambda d: d["frames_captured"] >= 5, 30, "5 samples")
        mine = {"stream_id": stream_id}

        def worker_reported() -> bool:  # its numbers come at most once a second
            return value(scrape(client), "streamgrid_capture_samples_total", **mine) >= 5

        wait_until(worker_reported, 15, "the worker's numbers on /metrics", step=0.2)
        during = scrape(client)
        assert value(during, "streamgrid_streams", state="Active") >= 1
        for counter in ("decodes", "keyframes_decoded", "packets_received", "bytes_received"):
            assert value(during, f"streamgrid_capture_{counter}_total", **mine) > 0, counter
        # Bytes on the wire outnumber the packets (each is hundreds of bytes).
        assert value(during, "streamgrid_capture_bytes_received_total", **mine) > 100 * value(
            during, "streamgrid_capture_packets_received_total", **mine
        )
        for histogram in ("decode_seconds", "jpeg_encode_seconds", "sample_lag_seconds"):
            assert value(during, f"streamgrid_capture_{histogram}_count", **mine) > 0, histogram
        assert value(during, "streamgrid_capture_reconnects_total", reason="eof", **mine) == 0

        response = client.post(f"/stop/{stream_id}")
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(requests, route="/start", method="POST", code="200") == 1
    assert moved(requests, route="/stop/{stream_id}", method="POST", code="200") == 1
    assert moved(requests, route="/streams/{stream_id}", method="GET", code="200") >= 1
    assert moved("streamgrid_http_request_duration_seconds_count", route="/start", method="POST")
    assert moved("streamgrid_grid_compose_seconds_count") == 1
    assert moved("streamgrid_grids_total", source="composed") == 1
    assert moved("streamgrid_streams", state="Stopped") == 1
    # A stopped stream holds no slot: its worker's series go (bounded by max_streams).
    assert ("streamgrid_capture_samples_total", (("stream_id", stream_id),)) not in after


def test_a_refused_camera_counts_as_refused_reconnects(server: Server) -> None:
    with server.client() as client:
        stream_id = start(client, f"rtsp://127.0.0.1:{free_port()}/nobody", capture_interval=1)
        try:
            name, labels = "streamgrid_capture_reconnects_total", {"stream_id": stream_id}
            wait_until(
                lambda: value(scrape(client), name, reason="refused", **labels) >= 2,
                30,
                "two refused connections on /metrics",
                step=0.3,
            )
            assert value(scrape(client), name, reason="timeout", **labels) == 0
        finally:
            assert client.post(f"/stop/{stream_id}").status_code == 400  # no frames captured
