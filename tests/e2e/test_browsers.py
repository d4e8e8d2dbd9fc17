"""Web pages cannot drive or read the server (gateway/browsers.py), on the
embedded and the cluster runtime: a cross-site form changes nothing, a
foreign Host (DNS rebinding) gets nothing, and what is not a browser, or is
the server's own page, is served as before.

The requests here are what a browser sends for such a page (its Origin,
Host and Sec-Fetch-* headers); test_browser_attacks.py has a real browser
send them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testbed.api import details, start, wait_for
from testbed.camera import Camera
from testbed.server import ALLOWED_ORIGIN, Server, start_server

EVIL = "http://evil.example"
FORM = {"content-type": "application/x-www-form-urlencoded"}
REBOUND = "rebind.evil.example"
UNKNOWN_ID = "0123456789abcdef"
# Routes the OpenAPI document does not list.
UNDOCUMENTED = [
    ("GET", "/"),
    ("GET", "/metrics"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/openapi.json"),
    ("GET", "/dashboard-assets/dashboard.js"),
]


def active(client: httpx.Client) -> dict[str, dict[str, object]]:
    listed: dict[str, dict[str, object]] = client.get("/list").json()["active_streams"]
    return listed


def every_route(client: httpx.Client) -> list[tuple[str, str]]:
    """(method, path) of every route: the OpenAPI document's, with an unknown
    id and rank 0 for their parameters, and those it does not list."""
    document = client.get("/openapi.json").json()
    routes = list(UNDOCUMENTED)
    for template, operations in document["paths"].items():
        path = re.sub(r"\{rank\}", "0", re.sub(r"\{stream_id\}", UNKNOWN_ID, template))
        routes += [(method.upper(), path) for method in operations]
    return routes


def host_of(server: Server) -> str:
    return server.base_url.removeprefix("http://")


def test_a_cross_site_form_starts_nothing(api_server: Server, camera: Camera) -> None:
    with api_server.client() as client:
        before = active(client)
        for headers in ({"origin": EVIL}, {"origin": "null"}, {"sec-fetch-site": "cross-site"}):
            response = client.post(
                "/start",
                params={"capture_interval": 5},
                content=f"rtsp_url={camera.url()}",
                headers={**FORM, **headers},
            )
            assert response.status_code == 403, response.text
            shown = headers.get("origin", "a cross-site request without Origin")
            assert response.text == f"Cross-site request refused: {shown}"
        assert active(client) == before


def test_cross_site_stops_stop_nothing(api_server: Server, camera: Camera) -> None:
    with api_server.client() as client:
        stream_id = start(client, camera.url(), capture_interval=0.5)
        wait_for(client, stream_id, lambda d: d["state"] == "Active", 60, "Active")
        for path in (f"/stop/{stream_id}", "/stop"):
            response = client.post(path, headers={**FORM, "origin": EVIL})
            assert response.status_code == 403, response.text
            assert response.text == f"Cross-site request refused: {EVIL}"
        # Still running, still counting.
        frames = details(client, stream_id)["frames_captured"]
        wait_for(client, stream_id, lambda d: d["frames_captured"] > frames, 30, "more samples")
        assert active(client)[stream_id]["state"] == "Active"
        # The server's own page may stop it.
        own = client.post(f"/stop/{stream_id}", headers={"origin": api_server.base_url})
        assert own.status_code == 200 and own.headers["content-type"] == "image/jpeg"
        assert stream_id not in active(client)


def test_a_foreign_host_gets_nothing_on_any_route(api_server: Server, camera: Camera) -> None:
    with api_server.client() as client:
        routes = every_route(client)
        before = active(client)
        port = api_server.base_url.rsplit(":", 1)[1]
        for host in (f"{REBOUND}:{port}", REBOUND, "localhost.evil.example"):
            for method, path in routes:
                response = client.request(
                    method,
                    path,
                    headers={"host": host, **FORM},
                    content=f"rtsp_url={camera.url()}" if path == "/start" else None,
                )
                assert response.status_code == 421, (method, path, response.text)
                assert "STREAMGRID_ALLOWED_HOSTS" in response.text
                assert response.text.count("\n") == 0
        assert {("GET", "/healthz"), ("POST", "/start"), ("GET", "/list")} <= set(routes)
        assert active(client) == before


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "[::1]:{port}",
        "localhost:{port}",
        "gateway.allowed.test",
        "a.allowed.test",
    ],
)
def test_ip_literals_localhost_and_allowed_names_are_served(api_server: Server, host: str) -> None:
    port = api_server.base_url.rsplit(":", 1)[1]
    with api_server.client() as client:
        headers = {"host": host.format(port=port)}
        assert client.get("/healthz", headers=headers).json() == {"status": "ok"}
        assert "active_streams" in client.get("/list", headers=headers).json()
        # The spec's own answers, from a client that sends no Origin.
        missing = client.post("/start", headers=headers)
        assert (missing.status_code, missing.text) == (400, "Missing RTSP URL")


def test_the_own_origin_and_an_allowed_one_may_start_and_stop(
    api_server: Server, camera: Camera
) -> None:
    with api_server.client() as client:
        for origin, site in ((api_server.base_url, "same-origin"), (ALLOWED_ORIGIN, "cross-site")):
            response = client.post(
                "/start",
                params={"capture_interval": 1},
                content=f"rtsp_url={camera.url()}",
                headers={**FORM, "origin": origin, "sec-fetch-site": site},
            )
            assert response.status_code == 200, response.text
            stream_id = response.json()["stream_id"]
            assert stream_id in active(client)
            stopped = client.post("/stop", headers={"origin": origin})
            assert stopped.status_code == 200, stopped.text
            assert stream_id in stopped.json()["results"]
            assert stream_id not in active(client)


def test_cors_answers_exactly_the_allowed_origins(api_server: Server) -> None:
    preflight = {"access-control-request-method": "POST"}
    with api_server.client() as client:
        allowed = client.options("/start", headers={"origin": ALLOWED_ORIGIN, **preflight})
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        read = client.get("/list", headers={"origin": ALLOWED_ORIGIN})
        assert read.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        for origin in (EVIL, "http://app.allowed.test:3001"):
            other = client.options("/start", headers={"origin": origin, **preflight})
            assert "access-control-allow-origin" not in other.headers
            listed = client.get("/list", headers={"origin": origin})
            assert "access-control-allow-origin" not in listed.headers


TOKEN = "browser-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def token_server(work_dir: Path) -> Iterator[Server]:
    srv = start_server(work_dir, "server-browsers-token", extra_env={"STREAMGRID_API_TOKEN": TOKEN})
    yield srv
    srv.process.stop()


def test_a_token_does_not_make_a_cross_site_write_pass(token_server: Server) -> None:
    """Defence in depth: a page that got hold of the token still cannot write."""
    auth = {"authorization": f"Bearer {TOKEN}"}
    with token_server.client() as client:
        refused = client.post("/stop", headers={**auth, **FORM, "origin": EVIL})
        assert (refused.status_code, refused.text) == (403, f"Cross-site request refused: {EVIL}")
        rebound = client.get("/healthz", headers={"host": REBOUND})
        assert rebound.status_code == 421
        assert client.post("/stop", headers=auth).json() == {"results": {}}
        assert client.post("/stop").status_code == 401  # no token, no Origin: as before
