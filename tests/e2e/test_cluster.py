"""The cluster runtime: the VideoStream CRD on a real kube-apiserver, the real
operator, capture pods run by the node stand-in (tests/support/node.py: not a
kubelet; the real node is its own issue), frames in a real S3 server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ..conftest import store_of
from ..support.camera import Camera
from ..support.cluster import ClusterRuntime
from ..support.processes import wait_until


def manifest(name: str, url: str = "rtsp://127.0.0.1:9/x", **spec: Any) -> str:
    body = {
        "apiVersion": "streamgrid.io/v1alpha1",
        "kind": "VideoStream",
        "metadata": {"name": name},
        "spec": {"source": {"url": url}, **spec},
    }
    return json.dumps(body)


def apply(cluster: ClusterRuntime, body: str, check: bool = True) -> str:
    return cluster.kube.kubectl(
        "-n", cluster.namespace, "apply", "-f", "-", input_text=body, check=check
    )


def status(cluster: ClusterRuntime, name: str) -> dict[str, Any]:
    stream = cluster.stream(name)
    found: dict[str, Any] = stream.get("status") or {}  # type: ignore[assignment]
    return found


def wait_status(cluster: ClusterRuntime, name: str, check: Any, timeout: float, what: str) -> None:
    wait_until(lambda: bool(check(status(cluster, name))), timeout, what, step=0.3)


def show(cluster: ClusterRuntime, capsys: pytest.CaptureFixture[str], why: str) -> None:
    """Prints `kubectl get vstream` into the test log, as a user would see it."""
    with capsys.disabled():
        print(
            f"\n$ kubectl get vstream -o wide   # {why}\n"
            + cluster.kubectl("get", "vstream", "-o", "wide")
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"source": {"url": "rtsp://user:pw@cam/x"}}, "spec.source.url"),
        ({"source": {"url": "http://cam/x"}}, "spec.source.url"),
        ({"source": {"url": "rtsp://cam/x"}, "captureInterval": 0}, "spec.captureInterval"),
        ({"source": {"url": "rtsp://cam/x"}, "topK": 101}, "spec.topK"),
        ({"source": {"url": "rtsp://cam/x"}, "state": "Paused"}, "spec.state"),
        ({"source": {"url": "rtsp://cam/x", "transport": "http"}}, "spec.source.transport"),
        ({"source": {"url": "rtsp://cam/x"}, "grid": {"tileWidth": 5}}, "spec.grid.tileWidth"),
        ({}, "spec.source"),
    ],
)
def test_the_crd_rejects_bad_specs(
    cluster: ClusterRuntime, spec: dict[str, Any], message: str
) -> None:
    body = json.dumps(
        {
            "apiVersion": "streamgrid.io/v1alpha1",
            "kind": "VideoStream",
            "metadata": {"name": "bad-spec"},
            "spec": spec,
        }
    )
    with pytest.raises(RuntimeError, match=message.replace(".", r"\.")):
        apply(cluster, body)


def test_the_crd_rejects_long_names(cluster: ClusterRuntime) -> None:
    with pytest.raises(RuntimeError, match="at most 63 characters"):
        apply(cluster, manifest("n" * 70))


def test_kubectl_only_workflow(
    cluster: ClusterRuntime, camera: Camera, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply starts capture, patch stops it, the TTL deletes it, GC takes the pod."""
    name = "kubectl-only"
    apply(cluster, manifest(name, camera.url("/gray"), captureInterval=0.5, topK=4))
    wait_status(
        cluster,
        name,
        lambda s: s.get("state") == "Active" and s.get("framesCaptured", 0) >= 3,
        60,
        "Active with 3 frames",
    )
    show(cluster, capsys, "capturing")

    pod = json.loads(cluster.kubectl("get", "pod", f"{name}-capture", "-o", "json"))
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("VideoStream", name, True)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["command"] == ["python", "-m", "streamgrid.capture"]
    conditions = {c["type"]: c["status"] for c in status(cluster, name)["conditions"]}
    assert conditions["Ready"] == "True" and conditions["Connected"] == "True"

    cluster.kubectl(
        "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"state":"Stopped"}}'
    )
    wait_status(cluster, name, lambda s: s.get("state") == "Stopped", 60, "Stopped")
    show(cluster, capsys, "stopped")
    final = status(cluster, name)
    assert final["stoppedAt"] and final["framesCaptured"] >= 3
    assert {c["type"]: c["status"] for c in final["conditions"]}["Stopped"] == "True"
    assert cluster.kubectl("get", "pod", f"{name}-capture", check=False) == ""
    stored = store_of(cluster.gateway).get_manifest(name)
    assert stored is not None and stored.final and len(stored.kept) == 4
    assert stored.frames_captured == final["framesCaptured"]

    cluster.kubectl(
        "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"ttlSecondsAfterStopped":1}}'
    )
    wait_until(
        lambda: cluster.kubectl("get", "vstream", name, check=False) == "",
        30,
        "the TTL to delete the stream",
    )


def test_a_lost_pod_is_recreated_and_no_kept_frame_is_lost(
    cluster: ClusterRuntime, camera: Camera, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "lost-pod"
    apply(cluster, manifest(name, camera.url("/gray"), captureInterval=0.3, topK=4))
    wait_status(cluster, name, lambda s: s.get("framesCaptured", 0) >= 8, 60, "8 frames")
    store = store_of(cluster.gateway)
    before = store.list_frames(name)
    count = status(cluster, name)["framesCaptured"]
    uid = json.loads(cluster.kubectl("get", "pod", f"{name}-capture", "-o", "json"))["metadata"][
        "uid"
    ]
    cluster.kubectl("delete", "pod", f"{name}-capture", "--grace-period=0", "--force")

    def replaced() -> bool:
        out = cluster.kubectl("get", "pod", f"{name}-capture", "-o", "json", check=False)
        return bool(out) and json.loads(out)["metadata"]["uid"] != uid

    wait_until(replaced, 30, "a new capture pod")
    wait_status(
        cluster, name, lambda s: s.get("framesCaptured", 0) >= count + 5, 60, "capturing again"
    )
    show(cluster, capsys, "after the pod was deleted")
    cluster.kubectl(
        "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"state":"Stopped"}}'
    )
    wait_status(cluster, name, lambda s: s.get("state") == "Stopped", 60, "Stopped")
    kept = store.get_manifest(name)
    assert kept is not None
    for record in before:
        beaten = sum(1 for r in kept.kept if r.rank_key < record.rank_key)
        assert record in kept.kept or beaten >= 4


def test_an_operator_restart_creates_no_duplicate_pods(
    cluster: ClusterRuntime, camera: Camera
) -> None:
    names = ["restart-a", "restart-b"]
    for name in names:
        apply(cluster, manifest(name, camera.url("/gray"), captureInterval=1))
    for name in names:
        wait_status(cluster, name, lambda s: s.get("state") == "Active", 60, "Active")

    def pod_uids() -> dict[str, str]:
        pods = json.loads(
            cluster.kubectl(
                "get", "pods", "-l", "app.kubernetes.io/component=capture", "-o", "json"
            )
        )["items"]
        return {
            p["metadata"]["name"]: p["metadata"]["uid"]
            for p in pods
            if p["metadata"]["labels"]["streamgrid.io/stream"] in names
        }

    before = pod_uids()
    started = cluster.node.started_count
    cluster.restart_operator()
    time.sleep(6)  # the resumed handlers and a few reconcile rounds
    assert pod_uids() == before
    assert cluster.node.started_count == started
    for name in names:
        assert status(cluster, name)["state"] == "Active"
        cluster.kubectl(
            "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"state":"Stopped"}}'
        )


def test_refused_credentials_fail_the_stream_without_restarts(
    cluster: ClusterRuntime, camera: Camera
) -> None:
    with cluster.gateway.client() as client:
        response = client.post("/start", data={"rtsp_url": camera.secure_url(password="nope-x")})
        name = response.json()["stream_id"]
    wait_status(cluster, name, lambda s: s.get("state") == "Failed", 60, "Failed")
    assert "401" in status(cluster, name)["reason"]
    stream = cluster.stream(name)
    assert "nope-x" not in json.dumps(stream)  # the spec holds no credential
    secret_ref = stream["spec"]["source"]["credentialsSecretRef"]  # type: ignore[index]
    assert secret_ref["name"] == f"{name}-credentials"
    time.sleep(4)  # reconcile rounds: a failed stream's pod is not recreated
    assert cluster.kubectl("get", "pod", f"{name}-capture", check=False) == ""
