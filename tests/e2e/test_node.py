"""The user's path on a real node: the chart installed by Helm, capture pods run
by a real kubelet in real containers (containerd, runc), reached through the
gateway's Service (kube-proxy), frames in a real S3 server. The tests run in
file order: the last one uninstalls the release."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ..support.api import assert_grid_of_brightest, assert_no_kept_frame_lost, details, start
from ..support.processes import wait_until
from ..support.release import NAMESPACE, RELEASE, NodeCluster

# The first test also brings the node up: images built on a fresh machine,
# imported into containerd, the chart installed.
pytestmark = pytest.mark.timeout(900)


def show(cluster: NodeCluster, capsys: pytest.CaptureFixture[str], why: str) -> None:
    """`kubectl get vstream,pods` in the test log, as a user would see it."""
    with capsys.disabled():
        print(f"\n$ kubectl get vstream,pods -o wide   # {why}")
        print(cluster.kubectl("get", "vstream,pods", "-o", "wide"))


def pod_of(cluster: NodeCluster, stream_id: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", "pod", f"{stream_id}-capture", "-o", "json", check=False)
    return json.loads(out) if out else None


def running(pod: dict[str, Any] | None) -> bool:
    if pod is None or pod["status"].get("phase") != "Running":
        return False
    return all(c.get("ready") for c in pod["status"].get("containerStatuses", []))


def vstream(cluster: NodeCluster, stream_id: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(cluster.kubectl("get", "vstream", stream_id, "-o", "json"))
    return found


def test_the_release_runs_on_the_node_and_helm_test_passes(node_cluster: NodeCluster) -> None:
    pods = node_cluster.pods()
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods}  # type: ignore[index]
    assert components >= {"gateway", "operator", "minio"}

    for pod in pods:
        assert pod["spec"]["nodeName"] == "streamgrid-node"  # type: ignore[index]
        assert pod["status"]["phase"] == "Running", pod["status"]  # type: ignore[index]
        for container in pod["status"]["containerStatuses"]:  # type: ignore[index]
            assert container["containerID"].startswith("containerd://")
    # Real containers: the node's containerd runs one task per container and sandbox.
    assert len(node_cluster.node.running_containers()) >= 2 * len(pods)
    out = node_cluster.helm("test", RELEASE, "--timeout", "120s")
    assert "Phase:          Succeeded" in out, out


def test_pods_resolve_services_by_name_and_nothing_else(node_cluster: NodeCluster) -> None:
    """CoreDNS: a Service's name gives its ClusterIP, the Service answers at
    it (kube-proxy), and a name outside the cluster does not resolve, since
    nothing is forwarded off the machine."""
    gateway = f"{RELEASE}-streamgrid-gateway"
    service = json.loads(node_cluster.kubectl("get", "service", gateway, "-o", "json"))
    code = "\n".join(
        [
            "import socket, urllib.request",
            f"ip = socket.gethostbyname({gateway!r})",
            f"body = urllib.request.urlopen(f'http://{gateway}:8080/healthz', timeout=5).read()",
            "try:",
            "    socket.gethostbyname('example.com')",
            "    outside = 'resolved'",
            "except socket.gaierror:",
            "    outside = 'NXDOMAIN'",
            "print(ip, body.decode(), outside)",
        ]
    )
    out = node_cluster.kubectl("exec", f"deploy/{gateway}", "--", "python", "-c", code)
    assert out.split() == [service["spec"]["clusterIP"], '{"status":"ok"}', "NXDOMAIN"], out


def test_a_stream_through_the_service_keeps_the_brightest(
    node_cluster: NodeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    camera = node_cluster.camera
    with node_cluster.client() as client:
        stream_id = start(client, camera.url("/gray"), capture_interval=0.2)
        wait_until(lambda: running(pod_of(node_cluster, stream_id)), 60, "a running capture pod")
        # 0.5 s per level, 12 levels: 35 samples see every level at least twice.
        wait_until(
            lambda: details(client, stream_id)["frames_captured"] >= 35, 60, "35 samples", step=0.5
        )
        show(node_cluster, capsys, "capturing")
        stream = vstream(node_cluster, stream_id)
        assert stream["status"]["state"] == "Active"
        assert client.post(f"/status/{stream_id}").json() == "Stream status: Active"

        response = client.post(f"/stop/{stream_id}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        manifest = node_cluster.store().get_manifest(stream_id)
        assert manifest is not None and manifest.frames_captured >= 35
        assert_grid_of_brightest(response.content, manifest, camera)
        show(node_cluster, capsys, "stopped")
        assert vstream(node_cluster, stream_id)["status"]["state"] == "Stopped"
        wait_until(lambda: pod_of(node_cluster, stream_id) is None, 60, "the pod to be gone")


def test_a_killed_capture_pod_is_recreated_and_no_kept_frame_is_lost(
    node_cluster: NodeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    store = node_cluster.store()
    with node_cluster.client() as client:
        stream_id = start(client, node_cluster.camera.url("/gray"), capture_interval=0.3, top_k=4)
        wait_until(
            lambda: details(client, stream_id)["frames_captured"] >= 8, 60, "8 samples", step=0.5
        )
        before = store.list_frames(stream_id)
        count = details(client, stream_id)["frames_captured"]
        first = pod_of(node_cluster, stream_id)
        assert first is not None
        node_cluster.kubectl("delete", "pod", f"{stream_id}-capture", "--grace-period=0", "--force")

        def replaced() -> bool:
            pod = pod_of(node_cluster, stream_id)
            return running(pod) and pod["metadata"]["uid"] != first["metadata"]["uid"]  # type: ignore[index]

        wait_until(replaced, 90, "the operator to recreate the pod, running", step=0.5)
        wait_until(
            lambda: details(client, stream_id)["frames_captured"] >= count + 5,
            60,
            "the new pod sampling",
            step=0.5,
        )
        show(node_cluster, capsys, "after the capture pod was force-deleted")
        response = client.post(f"/stop/{stream_id}")
        assert response.status_code == 200, response.text
        manifest = store.get_manifest(stream_id)
        assert manifest is not None and manifest.final
        assert manifest.frames_captured >= count + 5
        assert_no_kept_frame_lost(before, manifest.kept, 4)


def test_camera_credentials_stay_in_their_secret(node_cluster: NodeCluster) -> None:
    """Not in /list, the stream's status, the VideoStream, the pod spec, the
    events, or any container's log: only in the Secret the pod's env refers to."""
    from ..support.camera import PASSWORD

    camera = node_cluster.camera
    with node_cluster.client() as client:
        stream_id = start(client, camera.secure_url(), capture_interval=0.5)
        wait_until(
            lambda: details(client, stream_id)["frames_captured"] >= 2,
            60,
            "samples through RTSP auth",
            step=0.5,
        )
        pod = pod_of(node_cluster, stream_id)
        assert running(pod)
        seen = {
            "list": client.get("/list").text,
            "stream": client.get(f"/streams/{stream_id}").text,
            "pod": json.dumps(pod),
            "vstream": node_cluster.kubectl("get", "vstream", stream_id, "-o", "json"),
            "events": node_cluster.kubectl("get", "events", "-o", "json"),
            "logs": node_cluster.logs(),
        }
        assert client.post(f"/stop/{stream_id}").status_code == 200
    assert f"viewer:***@{camera.host}:{camera.secure_port}" in seen["list"]
    assert "worker.active" in seen["logs"]  # the capture pod's log really was read
    # The image's build stage compiled the C receive loop, and it runs in the pod.
    assert '"demux":"rtp"' in seen["logs"]
    for where, text in seen.items():
        assert PASSWORD not in text, where


def test_the_api_takes_kubernetes_tokens_and_rbac_decides(node_cluster: NodeCluster) -> None:
    """The chart turns authentication on: a token made by `kubectl create
    token` works as far as its account's RBAC verbs go, and no further."""
    node_cluster.kubectl("create", "serviceaccount", "api-viewer")
    node_cluster.kubectl(
        "create",
        "rolebinding",
        "api-viewer",
        f"--clusterrole={RELEASE}-streamgrid-view",
        f"--serviceaccount={NAMESPACE}:api-viewer",
    )
    with node_cluster.client(token="") as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        refused = anonymous.get("/list")
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer")
    with node_cluster.client() as user:
        stream_id = start(user, node_cluster.camera.url("/gray"), capture_interval=1)
        with node_cluster.client(token=node_cluster.token("api-viewer")) as viewer:
            assert stream_id in viewer.get("/list").json()["active_streams"]
            assert viewer.post(f"/status/{stream_id}").status_code == 200
            denied = viewer.post(f"/stop/{stream_id}")
            assert denied.status_code == 403, denied.text
            assert denied.text == (
                f"Forbidden: system:serviceaccount:{NAMESPACE}:api-viewer may not "
                f"update videostreams/{stream_id}.streamgrid.io"
            )
            assert viewer.post("/start", data={"rtsp_url": "rtsp://x/"}).status_code == 403
        assert vstream(node_cluster, stream_id)["spec"].get("state") != "Stopped"
        wait_until(
            lambda: details(user, stream_id)["frames_captured"] >= 1, 60, "a sample", step=0.5
        )
        assert user.post(f"/stop/{stream_id}").status_code == 200


def test_uninstall_leaves_no_pods_behind(node_cluster: NodeCluster) -> None:
    """Even with a stream still capturing: its pod goes with the release."""
    with node_cluster.client() as client:
        stream_id = start(client, node_cluster.camera.url("/gray"), capture_interval=1)
    wait_until(lambda: running(pod_of(node_cluster, stream_id)), 60, "a running capture pod")
    node_cluster.helm("uninstall", RELEASE, "--wait", "--timeout", "120s")
    deadline = time.monotonic() + 60
    wait_until(lambda: not node_cluster.pods(), 60, "every pod in the namespace to be gone")
    assert time.monotonic() < deadline
    wait_until(lambda: not node_cluster.node.running_containers(), 30, "every container to be gone")
