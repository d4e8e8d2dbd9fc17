"""Authentication and authorization of the HTTP API, on real servers: a static
token on the embedded runtime, and Kubernetes tokens (``kubectl create
token``) checked by TokenReview and RBAC (SubjectAccessReview) on the real
API server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testbed.api import start, wait_for
from testbed.camera import Camera
from testbed.cluster import ClusterRuntime
from testbed.server import Server, start_server

TOKEN = "s3cr3t-token-for-the-api-0123456789"


@pytest.fixture(scope="module")
def token_server(work_dir: Path) -> Iterator[Server]:
    server = start_server(work_dir, "server-token", extra_env={"STREAMGRID_API_TOKEN": TOKEN})
    yield server
    server.process.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_without_a_token_every_call_but_health_is_401_with_a_challenge(
    token_server: Server,
) -> None:
    with token_server.client() as client:
        assert client.get("/healthz").status_code == 200
        calls = [
            ("POST", "/start"),
            ("GET", "/list"),
            ("POST", "/status/0123456789abcdef"),
            ("GET", "/streams/0123456789abcdef"),
            ("POST", "/stop/0123456789abcdef"),
            ("POST", "/stop"),
            ("GET", "/no-such-path"),  # unknown paths say nothing either
        ]
        for method, path in calls:
            response = client.request(method, path)
            assert response.status_code == 401, (path, response.text)
            assert response.text == "Unauthorized: a bearer token is required"
            assert response.headers["www-authenticate"] == 'Bearer realm="streamgrid"'
        for header in ("Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"):
            response = client.get("/list", headers={"Authorization": header})
            assert response.status_code == 401, header
        wrong = client.get("/list", headers=bearer("wrong"))
        assert wrong.headers["www-authenticate"].endswith('error="invalid_token"')
        assert wrong.text == "Unauthorized: invalid bearer token"
    assert TOKEN not in token_server.log_text()


def test_with_the_token_the_api_answers_as_before(token_server: Server, camera: Camera) -> None:
    with token_server.client() as client:
        client.headers.update(bearer(TOKEN))
        assert client.post("/start").text == "Missing RTSP URL"
        assert client.get("/no-such-path").status_code == 404
        stream_id = start(client, camera.url("/gray"), capture_interval=0.2)
        wait_for(client, stream_id, lambda d: d["frames_captured"] >= 2, 30, "2 samples")
        assert stream_id in client.get("/list").json()["active_streams"]
        response = client.post(f"/stop/{stream_id}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"


def test_the_token_may_come_from_a_file(work_dir: Path) -> None:
    token_file = work_dir / "api.token"
    token_file.write_text("from-a-mounted-secret\n")  # as a Secret key usually ends
    server = start_server(
        work_dir, "server-token-file", extra_env={"STREAMGRID_API_TOKEN_FILE": str(token_file)}
    )
    try:
        with server.client() as client:
            assert client.get("/list").status_code == 401
            assert client.get("/list", headers=bearer("from-a-mounted-secret")).status_code == 200
    finally:
        server.process.stop()


def serve_once(host: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "streamgrid.cli", "serve", "--host", host, "--port", "1"]
    return subprocess.run(
        [*argv, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_serve_refuses_a_network_address_without_authentication(
    work_dir: Path, token_server: Server
) -> None:
    """192.0.2.1 (TEST-NET-1) is on no interface here: even a serve that got
    past the check could not listen on it."""
    env = {k: v for k, v in token_server.env.items() if not k.startswith("STREAMGRID_API_TOKEN")}
    refused = serve_once("192.0.2.1", env)
    assert refused.returncode == 2
    assert "refusing to serve on 192.0.2.1 without authentication" in refused.stderr
    assert "--insecure" in refused.stderr
    # With a token, or told explicitly, it goes on (and fails only to bind).
    for run in (
        serve_once("192.0.2.1", {**env, "STREAMGRID_API_TOKEN": TOKEN}),
        serve_once("192.0.2.1", env, "--insecure"),
    ):
        assert "refusing" not in run.stderr
        assert "gateway.starting" in run.stderr
    missing = serve_once("127.0.0.1", {**env, "STREAMGRID_API_TOKEN_FILE": "/nonexistent/t"})
    assert missing.returncode == 2
    assert "cannot read the API token file /nonexistent/t" in missing.stderr


# -- Kubernetes tokens and RBAC, on the real API server ------------------------

ROLES = {
    # What `kubectl` needs for the same things, and nothing more.
    "editor": "get,list,watch,create,update,patch",
    "viewer": "get,list,watch",
}


@pytest.fixture(scope="module")
def kube_auth_server(cluster: ClusterRuntime, work_dir: Path) -> Iterator[Server]:
    for name, verbs in ROLES.items():
        cluster.kubectl("create", "serviceaccount", f"api-{name}")
        cluster.kubectl(
            "create", "role", f"api-{name}", f"--verb={verbs}", "--resource=videostreams"
        )
        cluster.kubectl(
            "create",
            "rolebinding",
            f"api-{name}",
            f"--role=api-{name}",
            f"--serviceaccount={cluster.namespace}:api-{name}",
        )
    cluster.kubectl("create", "serviceaccount", "api-nobody")
    server = start_server(
        work_dir,
        "server-kube-auth",
        store_env={
            k: v
            for k, v in cluster.gateway.env.items()
            if k.startswith("STREAMGRID_S3") or k == "STREAMGRID_STORE_URL"
        },
        extra_env={
            **cluster.kube.env(),
            "STREAMGRID_BACKEND": "kube",
            "STREAMGRID_KUBE_NAMESPACE": cluster.namespace,
            "STREAMGRID_KUBE_STOP_TIMEOUT_SECONDS": "40",
            "STREAMGRID_AUTH_KUBERNETES": "true",
        },
    )
    yield server
    server.process.stop()


def kube_token(cluster: ClusterRuntime, account: str) -> str:
    return cluster.kubectl("create", "token", account, "--duration=1h").strip()


def test_kubernetes_tokens_are_authorized_by_rbac(
    kube_auth_server: Server, cluster: ClusterRuntime, camera: Camera
) -> None:
    editor = bearer(kube_token(cluster, "api-editor"))
    viewer = bearer(kube_token(cluster, "api-viewer"))
    nobody = bearer(kube_token(cluster, "api-nobody"))
    with kube_auth_server.client() as client:
        assert client.get("/list").status_code == 401
        assert client.get("/list", headers=bearer("not.a.jwt")).status_code == 401

        client.headers.update(editor)
        stream_id = start(client, camera.url("/gray"), capture_interval=0.5)
        client.headers.update(viewer)
        wait_for(client, stream_id, lambda d: d["frames_captured"] >= 1, 60, "a sample")
        assert stream_id in client.get("/list").json()["active_streams"]
        assert client.post(f"/status/{stream_id}").status_code == 200

        for headers in (viewer, nobody):
            forbidden = client.post(f"/stop/{stream_id}", headers=headers)
            assert forbidden.status_code == 403, forbidden.text
            who = f"system:serviceaccount:{cluster.namespace}:api-"
            assert forbidden.text.startswith(f"Forbidden: {who}")
            assert f"may not update videostreams/{stream_id}.streamgrid.io" in forbidden.text
        denied = client.post("/start", data={"rtsp_url": camera.url("/gray")}, headers=viewer)
        assert denied.status_code == 403
        assert "may not create videostreams.streamgrid.io" in denied.text
        assert client.get("/list", headers=nobody).status_code == 403

        stopped = client.post(f"/stop/{stream_id}", headers=editor)
        assert stopped.status_code == 200, stopped.text
        assert stopped.headers["content-type"] == "image/jpeg"


def test_an_unreachable_reviewer_is_a_503_not_a_pass(work_dir: Path, token_server: Server) -> None:
    """Kubernetes auth with an API server that does not answer: refused, with the reason."""
    kubeconfig = work_dir / "nowhere.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
    )
    server = start_server(
        work_dir,
        "server-no-reviewer",
        extra_env={"STREAMGRID_AUTH_KUBERNETES": "true", "KUBECONFIG": str(kubeconfig)},
    )
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            response = client.get("/list", headers=bearer("some-token"))
            assert response.status_code == 503
            assert response.text.startswith("Authentication unavailable")
    finally:
        server.process.stop()


def test_the_openapi_document_declares_the_bearer_token(token_server: Server) -> None:
    """Documented as it behaves: Schemathesis calls every operation without
    a token, and each 401 must be an answer the document declares."""
    import schemathesis
    from schemathesis import GenerationMode

    from .test_openapi import fuzz, operations

    with token_server.client() as client:
        document = client.get("/openapi.json").json()  # the docs need no token
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for operation in item.values():
            if path == "/healthz":
                assert "security" not in operation
            else:
                assert operation["security"] == [{"bearer": []}], path
                assert "401" in operation["responses"], path
    schema = schemathesis.openapi.from_url(token_server.base_url + "/openapi.json")
    for operation in operations(schema):
        fuzz(operation, GenerationMode.POSITIVE)
