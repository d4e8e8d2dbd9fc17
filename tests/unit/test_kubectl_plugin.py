"""`kubectl streamgrid`: the pure parts (the VideoStream it creates, the table
it prints, what it says of a stream with no grid yet). The commands against a
real API server are in tests/e2e/test_cluster.py and test_node.py."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from typing import Any

import pytest

from streamgrid.kubectl_plugin import (
    Kube,
    PluginError,
    StartOptions,
    age,
    grid_from_gateway,
    main,
    not_stopped,
    split_object_url,
    status_screen,
    stream_body,
    table,
)
from testbed.kube import ROOT


def test_it_is_the_kubectl_streamgrid_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-streamgrid"] == "streamgrid.kubectl_plugin:main"


def test_credentials_go_to_the_secret_never_the_spec() -> None:
    body, secret = stream_body(StartOptions("lobby", "rtsp://admin:s3cret@cam:554/live", 0.5, 4))
    assert secret == {"username": "admin", "password": "s3cret"}
    assert "s3cret" not in json.dumps(body)
    source = body["spec"]["source"]
    assert source["url"] == "rtsp://cam:554/live"
    assert source["credentialsSecretRef"] == {"name": "lobby-credentials"}
    assert body["spec"]["captureInterval"] == 0.5 and body["spec"]["topK"] == 4
    assert body["spec"]["state"] == "Running"


def test_a_token_in_the_query_goes_to_the_secret_whole() -> None:
    url = "rtsp://cam/live?channel=1&token=abc123"
    body, secret = stream_body(StartOptions("lobby", url))
    assert secret == {"url": url}
    assert "abc123" not in json.dumps(body)


def test_a_url_without_credentials_needs_no_secret() -> None:
    body, secret = stream_body(StartOptions("lobby", "rtsp://cam/live", columns=4, tile_width=64))
    assert secret == {}
    assert "credentialsSecretRef" not in body["spec"]["source"]
    assert body["spec"]["grid"] == {"columns": 4, "tileWidth": 64, "tileHeight": 300}


def stream(name: str, state: str | None, desired: str = "Running", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": "2026-11-29T10:00:00Z"},
        "spec": {"state": desired, "captureInterval": 0.5, "topK": 4},
        "status": {"state": state, **status} if state else {},
    }


def test_ls_prints_a_kubectl_like_table() -> None:
    now = datetime(2026, 11, 29, 10, 5, tzinfo=UTC)
    grid = {"width": 600, "height": 600, "name": "grid_2x2_300x300_n4.jpg"}
    out = table(
        [
            stream("lobby", "Stopped", "Stopped", framesCaptured=40, grid=grid),
            stream("door", "Active", framesCaptured=7),
        ],
        now,
    )
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "STATE",
        "DESIRED",
        "FRAMES",
        "INTERVAL",
        "TOPK",
        "GRID",
        "AGE",
    ]
    assert lines[1].split() == ["door", "Active", "Running", "7", "0.5", "4", "<none>", "5m"]
    assert lines[2].split() == ["lobby", "Stopped", "Stopped", "40", "0.5", "4", "600x600", "5m"]
    assert lines[1].index("Active") == lines[0].index("STATE")  # aligned columns


def test_ages_read_as_kubectl_writes_them() -> None:
    now = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    assert age("2026-11-29T09:59:18Z", now) == "42s"
    assert age("2026-11-29T08:00:00Z", now) == "120m"
    assert age("2026-11-28T10:00:00Z", now) == "24h"
    assert age("2026-11-19T10:00:00Z", now) == "10d"
    assert age(None, now) == "<unknown>"


def test_a_stream_without_a_grid_yet_says_why() -> None:
    assert not_stopped(stream("lobby", "Stopped", "Stopped")) is None
    running = not_stopped(stream("lobby", "Active"))
    assert running == (
        "lobby is still running (state Active): stop it first (kubectl streamgrid stop lobby)"
    )
    assert "still stopping" in str(not_stopped(stream("lobby", "Stopping", "Stopped")))
    assert "state Pending" in str(not_stopped(stream("lobby", None)))


def test_object_urls_split_into_a_store_and_a_key() -> None:
    url = "s3://bucket/frames/ns/lobby/grids/grid_3x3_300x300_n9.jpg"
    assert split_object_url(url) == ("s3://bucket/frames/ns/lobby/grids", "grid_3x3_300x300_n9.jpg")
    assert split_object_url("s3://bucket/frames/ns/lobby/") == ("s3://bucket/frames/ns", "lobby")
    with pytest.raises(PluginError):
        split_object_url("s3://bucket")


def test_a_bad_kubeconfig_is_an_error_message_not_a_traceback(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["--kubeconfig", str(missing), "ls"]) == 1
    assert capsys.readouterr().err.startswith("error: kubeconfig:")


def test_the_gateway_gets_the_kubeconfig_users_token(tmp_path: Any) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "dev",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "me", "user": {"token": "my-kube-token"}}],
                "contexts": [
                    {"name": "dev", "context": {"cluster": "c", "user": "me", "namespace": "cams"}},
                    {"name": "other", "context": {"cluster": "c", "user": "me"}},
                ],
            }
        )
    )
    kube = Kube.connect(str(kubeconfig), None, None)  # no request is made
    assert (kube.token, kube.namespace) == ("my-kube-token", "cams")
    assert Kube.connect(str(kubeconfig), "other", None).namespace == "default"
    assert Kube.connect(str(kubeconfig), "other", "lobby").namespace == "lobby"


def test_the_token_never_follows_a_redirect() -> None:
    """A gateway that redirects would hand the user's kube token to wherever
    it points: the plugin stops at the 3xx and says so."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    reached: list[str | None] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            reached.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    elsewhere = HTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirecting(Elsewhere):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_port}/grab")
            self.end_headers()

    gateway = HTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (elsewhere, gateway):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stream = {"metadata": {"name": "cam"}}
        with pytest.raises(PluginError, match="307 redirect not followed"):
            grid_from_gateway(f"http://127.0.0.1:{gateway.server_port}", stream, "kube-token")
        assert reached == []
    finally:
        for server in (elsewhere, gateway):
            server.shutdown()
            server.server_close()


def test_status_shows_one_stream_on_one_screen() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    stream: dict[str, Any] = {
        "metadata": {
            "name": "lobby",
            "namespace": "cams",
            "annotations": {"streamgrid.io/display-url": "rtsp://admin:***@cam/live"},
        },
        "spec": {"source": {"url": "rtsp://cam/live"}, "captureInterval": 2, "topK": 4},
        "status": {
            "state": "Active",
            "framesCaptured": 120,
            "kept": 4,
            "lastFrameAt": "2026-03-01T11:59:58Z",
            "restarts": 1,
            "store": {"url": "s3://b/p/cams/lobby/"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Active",
                    "message": "",
                    "lastTransitionTime": "2026-03-01T11:50:00Z",
                },
                {
                    "type": "Stalled",
                    "status": "False",
                    "reason": "NotStalled",
                    "message": "",
                    "lastTransitionTime": "2026-03-01T11:40:00Z",
                },
            ],
        },
    }
    pod = {
        "metadata": {"name": "lobby-capture", "creationTimestamp": "2026-03-01T11:40:00Z"},
        "spec": {"nodeName": "node-1"},
        "status": {"phase": "Running", "containerStatuses": [{"ready": True}]},
    }
    events = [
        {
            "type": "Normal",
            "reason": "PodCreated",
            "count": 2,
            "message": "capture pod lobby-capture created",
            "lastTimestamp": "2026-03-01T11:40:00Z",
        },
        {
            "type": "Warning",
            "reason": "PodExited",
            "count": 1,
            "message": "exited with code 1",
            "lastTimestamp": "2026-03-01T11:45:00Z",
        },
    ]
    screen = status_screen(stream, pod, events, now)
    assert "VideoStream cams/lobby" in screen
    assert "State:        Active (desired Running)" in screen
    assert "rtsp://admin:***@cam/live" in screen and "admin:" not in screen.replace("admin:***", "")
    assert "Frames:       120 captured, 4 kept" in screen
    assert "Last sample:  2s ago" in screen
    assert "Pod:          lobby-capture Running, ready on node-1, age 20m" in screen
    assert "Store:        s3://b/p/cams/lobby/" in screen
    conditions = screen.split("Conditions:")[1].split("Events:")[0]
    assert conditions.splitlines()[1].split()[:3] == ["TYPE", "STATUS", "REASON"]
    assert "Ready" in conditions and "Stalled" in conditions
    latest = screen.split("Events:")[1].splitlines()
    assert latest[2].split()[1:4] == ["Warning", "PodExited", "1"]  # newest first
    assert latest[3].split()[1:4] == ["Normal", "PodCreated", "2"]
    bare = status_screen({"metadata": {"name": "x", "namespace": "n"}}, None, [], now)
    assert "Pod:          <none>" in bare and "<none>" in bare.split("Events:")[1]
