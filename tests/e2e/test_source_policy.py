"""The source policy end to end (issue 12, item 2): /start refuses a denied
address in any spelling; the worker refuses a name that resolves to one, and a
redirect to one, as a permanent failure with the policy's reason; and /status
no longer tells what listens on a port it may not reach."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamgrid.capture.source import SourceFatalError, VideoSource
from streamgrid.core.crd import WorkerExit
from streamgrid.core.models import StreamState
from streamgrid.core.sources import DEFAULT_DENY_CIDRS, SourceNotAllowed, SourcePolicy
from testbed.api import start, wait_for
from testbed.camera import Camera
from testbed.hostile_camera import HostileCamera, Script, answer, valid_answers
from testbed.processes import free_port
from testbed.server import Server, start_server
from testbed.worker import capture_settings, dir_store, start_worker


def _loopback_reason() -> str:
    """What the policy says of ``localhost`` with loopback denied: "localhost
    resolves to 127.0.0.1, in denied range 127.0.0.0/8" (or ::1 first, where
    the resolver gives that first)."""
    try:
        SourcePolicy.from_cidrs(deny_loopback=True).resolve_and_check("localhost", 554, 5.0)
    except SourceNotAllowed as exc:
        assert exc.reason.startswith("localhost resolves to ")
        assert exc.reason.endswith(("in denied range 127.0.0.0/8", "in denied range ::1/128"))
        return exc.reason
    raise AssertionError("localhost was allowed with loopback denied")


LOOPBACK_REASON = _loopback_reason()


@pytest.fixture(scope="module")
def strict_server(work_dir: Path) -> Iterator[Server]:
    """The embedded runtime with loopback denied, as in the cluster."""
    srv = start_server(
        work_dir, "server-strict-sources", extra_env={"STREAMGRID_SOURCE_DENY_LOOPBACK": "true"}
    )
    yield srv
    srv.process.stop()


def status_of(client: httpx.Client, stream_id: str) -> str:
    response = client.post(f"/status/{stream_id}")
    assert response.status_code == 200, response.text
    text: str = json.loads(response.text)
    return text


def failed(client: httpx.Client, url: str, **params: Any) -> dict[str, Any]:
    """Starts a stream (a host name passes /start) and waits for it to fail."""
    stream_id = start(client, url, **params)
    found: dict[str, Any] = {}

    def done(info: dict[str, Any]) -> bool:
        found.update(info)
        return info["state"] in (StreamState.FAILED.value, StreamState.RECONNECTING.value)

    wait_for(client, stream_id, done, 30, f"{url} to fail")
    found["status"] = status_of(client, stream_id)
    return found


# -- /start ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("rtsp://169.254.169.254/x", "Source not allowed: 169.254.169.254 is in denied range"),
        (
            "rtsp://[::ffff:169.254.169.254]/x",
            "Source not allowed: ::ffff:169.254.169.254 is 169.254.169.254, in denied range",
        ),
        ("rtsp://[fe80::1]:554/x", "Source not allowed: fe80::1 is in denied range fe80::/10"),
        ("rtsp://0.0.0.0:554/x", "Source not allowed: 0.0.0.0 is in denied range 0.0.0.0/8"),
        ("rtsp://0x7f000001:554/x", "Source not allowed: 0x7f000001 is 127.0.0.1, in denied"),
        ("rtsp://127.0.0.0x1:554/x", "Source not allowed: 127.0.0.0x1 is 127.0.0.1, in denied"),
        ("rtsp://[::ffff:127.0.0.1]/x", "Source not allowed: ::ffff:127.0.0.1 is 127.0.0.1"),
        ("rtsp://[::1]:554/x", "Source not allowed: ::1 is in denied range ::1/128"),
        # Not an address the URL check takes (it never was): a 400 all the same.
        ("rtsp://2130706433:554/x", "Invalid RTSP URL: invalid host"),
        ("rtsp://127.1:554/x", "Invalid RTSP URL: invalid host"),
        ("rtsp://0177.0.0.1:554/x", "Invalid RTSP URL: invalid host"),
    ],
)
def test_start_refuses_a_denied_address_in_any_spelling(
    strict_server: Server, url: str, body: str
) -> None:
    with strict_server.client() as client:
        response = client.post("/start", data={"rtsp_url": url})
        assert client.get("/list").json()["active_streams"] == {}
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith(body) and "\n" not in response.text


def test_the_default_policy_refuses_metadata_and_link_local(api_server: Server) -> None:
    """Both runtimes: the embedded one, and the cluster's gateway."""
    with api_server.client() as client:
        for url in ("rtsp://169.254.169.254/latest/meta-data", "rtsp://[fe80::1]/x"):
            response = client.post("/start", data={"rtsp_url": url})
            assert response.status_code == 400
            assert response.text.startswith("Source not allowed: "), response.text


# -- the worker ---------------------------------------------------------------------
def test_a_name_that_resolves_to_a_denied_address_fails_the_stream(
    strict_server: Server, camera: Camera
) -> None:
    """A real camera behind the name: only the policy stands in the way."""
    with strict_server.client() as client:
        url = f"rtsp://localhost:{camera.port}/gray"
        for transport in ("tcp", "udp"):  # ours, and FFmpeg's (UDP)
            info = failed(client, url, rtsp_transport=transport, capture_interval=0.5)
            assert info["state"] == "Failed", info
            assert info["reason"] == f"source not allowed: {LOOPBACK_REASON}"
            assert (
                info["status"] == f"Stream status: Failed (source not allowed: {LOOPBACK_REASON})"
            )
            assert info["frames_captured"] == 0


def test_the_same_camera_is_read_where_loopback_is_allowed(server: Server, camera: Camera) -> None:
    with server.client() as client:
        stream_id = start(client, camera.url("/gray"), capture_interval=0.3)
        wait_for(client, stream_id, lambda i: i["frames_captured"] >= 2, 30, "frames")
        assert status_of(client, stream_id) == "Stream status: Active"
        assert client.post(f"/stop/{stream_id}").status_code == 200


def test_status_does_not_tell_an_open_port_from_a_closed_one(strict_server: Server) -> None:
    """It used to: 'not an RTSP answer: HTTP/1.1 400 ...' on the gateway's own
    port, 'Connection refused' on a closed one."""
    open_port = int(strict_server.base_url.rsplit(":", 1)[1])  # an HTTP server listens
    closed_port = free_port()
    with strict_server.client() as client:
        seen = [failed(client, f"rtsp://localhost:{port}/x") for port in (open_port, closed_port)]
    assert [s["state"] for s in seen] == ["Failed", "Failed"]
    assert seen[0]["status"] == seen[1]["status"]
    assert seen[0]["reason"] == seen[1]["reason"] == f"source not allowed: {LOOPBACK_REASON}"


def test_the_worker_fails_for_good_on_a_denied_source(tmp_path: Path, camera: Camera) -> None:
    """No retries: Failed, exit 3, whatever the camera would have said."""
    settings = capture_settings(f"rtsp://localhost:{camera.port}/gray", source_deny_loopback=True)
    run = start_worker(settings, dir_store(tmp_path))
    run.wait_for(lambda p: p.state is StreamState.FAILED, 20, "the worker to fail")
    assert run.stop() == WorkerExit.FAILED
    assert run.progress.last().reason == f"source not allowed: {LOOPBACK_REASON}"
    assert StreamState.RECONNECTING not in run.progress.states()


def test_a_redirect_to_a_denied_address_is_not_followed() -> None:
    """The classic way around a check made only at /start."""
    answers = valid_answers()
    answers["DESCRIBE"] = [answer("302 Moved Temporarily", "Location: rtsp://169.254.169.254/x")]
    with HostileCamera(Script(answers)) as cam:
        with pytest.raises(SourceFatalError) as raised:
            VideoSource(cam.url("/x"), open_timeout=3.0).__enter__()
        assert str(raised.value) == (
            "source not allowed: 169.254.169.254 is in denied range 169.254.0.0/16 "
            f"(redirected from rtsp://127.0.0.1:{cam.port})"
        )
        assert [r.method for r in cam.requests()] == ["OPTIONS", "DESCRIBE"]


def test_a_redirect_to_another_spelling_of_a_denied_address_is_not_followed() -> None:
    policy = SourcePolicy.from_cidrs(deny=[*DEFAULT_DENY_CIDRS, "127.0.0.2/32"])
    answers = valid_answers()
    answers["OPTIONS"] = [answer("301 Moved Permanently", "Location: rtsp://0x7f000002:9/x")]
    with HostileCamera(Script(answers)) as cam:
        source = VideoSource(cam.url("/x"), open_timeout=3.0, source_policy=policy)
        with pytest.raises(SourceFatalError) as raised:
            source.__enter__()
    assert str(raised.value) == (
        "source not allowed: 0x7f000002 is 127.0.0.2, in denied range 127.0.0.2/32 "
        f"(redirected from rtsp://127.0.0.1:{cam.port})"
    )
