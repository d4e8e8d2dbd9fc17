"""The operator's own API client against a real kube-apiserver: JSON in and
out, the API server's errors as ApiError, LIST pages, an exec plugin's
token asked again after a 401; and a connection the server closed while
idle, against a real socket server."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from streamgrid.core.kuberest import ApiError, Credentials, KubeClient, load_credentials
from streamgrid.operator.kubeapi import _pages, core_path
from testbed.kube import TOKEN, KubeCluster


@pytest.fixture
def namespace(kube: KubeCluster) -> Iterator[str]:
    name = f"kuberest-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false")


def config_map(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"k": name}}


def test_writes_reads_and_the_api_servers_errors(kube: KubeCluster, namespace: str) -> None:
    api = KubeClient(load_credentials(str(kube.kubeconfig)))
    maps = core_path("configmaps", namespace)
    made = api.request("POST", maps, body=config_map("one"))
    assert made["metadata"]["uid"] and made["data"] == {"k": "one"}
    assert api.get(f"{maps}/one")["metadata"]["uid"] == made["metadata"]["uid"]
    with pytest.raises(ApiError) as taken:
        api.request("POST", maps, body=config_map("one"))
    assert taken.value.status == 409
    assert json.loads(taken.value.body)["message"] == 'configmaps "one" already exists'
    with pytest.raises(ApiError) as missing:
        api.get(f"{maps}/absent")
    assert missing.value.status == 404
    patched = api.request(
        "PATCH",
        f"{maps}/one",
        body={"data": {"k": "two"}},
        content_type="application/merge-patch+json",
    )
    assert patched["data"] == {"k": "two"}
    api.request("DELETE", f"{maps}/one")
    with pytest.raises(ApiError, match="404"):
        api.get(f"{maps}/one")


def test_a_list_comes_page_by_page_of_one_snapshot(kube: KubeCluster, namespace: str) -> None:
    api = KubeClient(load_credentials(str(kube.kubeconfig)))
    maps = core_path("configmaps", namespace)
    for index in range(5):
        api.request("POST", maps, body=config_map(f"m{index}", listed="yes"))
    api.request("POST", maps, body=config_map("other"))
    pages = list(
        _pages(
            api,
            maps,
            lambda item: {"name": item["metadata"]["name"]},
            {"labelSelector": "listed=yes"},
            limit=2,
        )
    )
    assert [len(items) for items, _ in pages] == [2, 2, 1]
    assert sorted(i["name"] for items, _ in pages for i in items) == [f"m{i}" for i in range(5)]
    versions = {version for _, version in pages}
    assert len(versions) == 1 and None not in versions


def test_requests_from_many_threads_each_get_their_answer(
    kube: KubeCluster, namespace: str
) -> None:
    api = KubeClient(load_credentials(str(kube.kubeconfig)))
    maps = core_path("configmaps", namespace)
    names = [f"t{i}" for i in range(24)]
    for name in names:
        api.request("POST", maps, body=config_map(name))
    got: dict[str, str] = {}
    start = threading.Barrier(6)

    def read(mine: list[str]) -> None:
        start.wait()
        for name in mine:
            got[name] = api.get(f"{maps}/{name}")["data"]["k"]

    threads = [threading.Thread(target=read, args=(names[i::6],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == {name: name for name in names}


def test_a_wrong_token_is_a_401(kube: KubeCluster) -> None:
    api = KubeClient(Credentials(server=kube.url, ca_file=str(kube.ca_file), token="wrong"))
    with pytest.raises(ApiError) as refused:
        api.get("/api/v1/namespaces")
    assert refused.value.status == 401


def test_an_exec_plugins_token_is_asked_again_after_a_401(
    kube: KubeCluster, tmp_path: Path
) -> None:
    """The plugin first gives a token the server refuses (an expired one),
    then the right one: the request succeeds, with one more run of it."""
    answers = tmp_path / "answers"
    answers.write_text("wrong\n" + TOKEN + "\n")
    script = tmp_path / "plugin.py"
    script.write_text(
        "import json, pathlib, sys\n"
        f"answers = pathlib.Path({str(answers)!r})\n"
        "lines = answers.read_text().splitlines()\n"
        "answers.write_text('\\n'.join(lines[1:] or lines) + '\\n')\n"
        "print(json.dumps({'kind': 'ExecCredential', 'status': {'token': lines[0]}}))\n"
    )
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "clusters": [
                    {
                        "name": "k",
                        "cluster": {"server": kube.url, "certificate-authority": str(kube.ca_file)},
                    }
                ],
                "users": [
                    {
                        "name": "u",
                        "user": {"exec": {"command": sys.executable, "args": [str(script)]}},
                    }
                ],
            }
        )
    )
    api = KubeClient(load_credentials(str(config)))
    assert api.credentials.bearer() == "wrong"
    assert api.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
    assert api.credentials.bearer() == TOKEN


def test_an_unreachable_server_is_status_0(kube: KubeCluster) -> None:
    api = KubeClient(
        Credentials(server="https://127.0.0.1:9", ca_file=str(kube.ca_file)), timeout=5
    )
    with pytest.raises(ApiError) as unreachable:
        api.get("/api")
    assert unreachable.value.status == 0 and "cannot reach" in unreachable.value.reason


class ClosesAfterEachAnswer(http.server.BaseHTTPRequestHandler):
    """Says keep-alive, then closes the connection once the client waits
    idle (as a server's idle timeout does); counts connections."""

    protocol_version = "HTTP/1.1"
    connections: ClassVar[list[int]] = []
    answered = threading.Event()

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True  # without saying so: the client finds out on reuse
        type(self).answered.set()

    def log_message(self, *_: object) -> None:
        pass


def test_a_connection_the_server_closed_while_idle_is_made_anew_once() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ClosesAfterEachAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = KubeClient(Credentials(server=f"http://127.0.0.1:{server.server_port}"))
        assert api.get("/first") == {"path": "/first"}
        assert ClosesAfterEachAnswer.answered.wait(5)
        assert api.get("/second", {"limit": 2}) == {"path": "/second?limit=2"}
        assert len(ClosesAfterEachAnswer.connections) == 2
    finally:
        server.shutdown()
        server.server_close()
