"""Every bad input of the spec gets a 4xx with a one-line plain-text reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.server import Server

URL = "rtsp://127.0.0.1:9/x"


@pytest.mark.parametrize(
    ("data", "params", "status", "body"),
    [
        (None, {}, 400, "Missing RTSP URL"),
        ({"rtsp_url": ""}, {}, 400, "Missing RTSP URL"),
        ({"other": URL}, {}, 400, "Missing RTSP URL"),
        ({"rtsp_url": "http://example.com/x"}, {}, 400, "Invalid RTSP URL: scheme"),
        ({"rtsp_url": "rtsp://"}, {}, 400, "Invalid RTSP URL: no host"),
        ({"rtsp_url": "rtsp://h/" + "a" * 5000}, {}, 400, "Invalid RTSP URL: longer"),
        ({"rtsp_url": URL}, {"capture_interval": "0"}, 400, "Invalid capture_interval"),
        ({"rtsp_url": URL}, {"capture_interval": "-1"}, 400, "Invalid capture_interval"),
        ({"rtsp_url": URL}, {"capture_interval": "soon"}, 400, "Invalid capture_interval"),
        ({"rtsp_url": URL}, {"capture_interval": "1e309"}, 400, "Invalid capture_interval"),
        ({"rtsp_url": URL}, {"top_k": "0"}, 400, "Invalid top_k"),
        ({"rtsp_url": URL}, {"rtsp_transport": "carrier-pigeon"}, 400, "Invalid rtsp_transport"),
        ({"rtsp_url": URL}, {"tile_width": "100000"}, 400, "Invalid tile_width"),
    ],
)
def test_start_rejects(
    api_server: Server, data: dict[str, str] | None, params: dict[str, str], status: int, body: str
) -> None:
    with api_server.client() as client:
        response = client.post("/start", data=data, params=params)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith(body) and "\n" not in response.text


def test_json_body_is_accepted_and_bad_json_is_a_400(api_server: Server) -> None:
    with api_server.client() as client:
        bad = client.post("/start", content=b"{nope", headers={"content-type": "application/json"})
        assert (bad.status_code, bad.text) == (400, "Invalid JSON body")
        ok = client.post("/start", json={"rtsp_url": URL})
        assert ok.status_code == 200
        stream_id = ok.json()["stream_id"]
        assert client.post(f"/stop/{stream_id}").text == "No frames captured"


def test_oversized_body_is_refused(api_server: Server) -> None:
    with api_server.client() as client:
        response = client.post("/start", data={"rtsp_url": URL, "pad": "x" * 100_000})
    assert (response.status_code, response.text) == (413, "Request body too large")


def test_a_chunked_body_is_bounded_too(api_server: Server) -> None:
    """No Content-Length to check: the body is counted as it comes, and the
    server stops reading at 64 KiB (it used to read 300 MB whole)."""

    def chunks() -> Iterator[bytes]:
        yield b'{"rtsp_url": "' + URL.encode() + b'", "pad": "'
        for _ in range(1024):  # 16 MiB, were it all read
            yield b"x" * 16384

    with api_server.client() as client:
        headers = {"content-type": "application/json"}
        response = client.post("/start", content=chunks(), headers=headers)
        assert (response.status_code, response.text) == (413, "Request body too large")
        assert client.get("/healthz").status_code == 200


def test_deeply_nested_json_is_a_400_not_a_500(api_server: Server) -> None:
    body = b"[" * 5000 + b"]" * 5000
    with api_server.client() as client:
        response = client.post("/start", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.text.startswith("Invalid JSON body: nested deeper than")


@pytest.mark.parametrize("stream_id", ["0123456789abcdef", "a..b", "UPPER", "a" * 200, "x;rm"])
def test_unknown_ids_are_404_with_the_spec_strings(api_server: Server, stream_id: str) -> None:
    with api_server.client() as client:
        status = client.post(f"/status/{stream_id}")
        stop = client.post(f"/stop/{stream_id}")
    assert (status.status_code, status.text) == (404, f"Stream not found with id {stream_id}")
    assert (stop.status_code, stop.text) == (404, f"Stream ID {stream_id} not found")


def test_wrong_method_is_a_405_not_a_500(api_server: Server) -> None:
    with api_server.client() as client:
        assert client.get("/start").status_code == 405
        assert client.get("/stop").status_code == 405
        wrong = client.get("/status/0123456789abcdef")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


def test_control_characters_of_an_unknown_id_are_not_echoed(api_server: Server) -> None:
    with api_server.client() as client:
        status = client.post("/status/a%01b%1b%5B2J")
        stop = client.post("/stop/a%0db")
    assert (status.status_code, status.text) == (404, "Stream not found with id a\\x01b\\x1b[2J")
    assert (stop.status_code, stop.text) == (404, "Stream ID a\\rb not found")
