"""The cluster runtime: the VideoStream CRD on a real kube-apiserver, the real
operator, capture pods run by the node stand-in (testbed/node.py: not a
kubelet; the real node is its own issue), frames in a real S3 server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from streamgrid.core.geometry import GridGeometry
from streamgrid.core.grid import jpeg_size
from streamgrid.core.settings import CommonSettings
from streamgrid.core.stores.frames import FrameStore
from streamgrid.core.timestamps import parse_utc
from testbed.camera import PASSWORD, Camera
from testbed.cluster import BUCKET, ClusterRuntime
from testbed.node import NodeStandIn
from testbed.plugin import KubectlPlugin, installed_plugin_dir
from testbed.processes import wait_until
from testbed.s3 import S3Server

from ..conftest import store_of


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
    # Four samples before the stop: the top K of 4 is asserted full below.
    wait_status(
        cluster,
        name,
        lambda s: s.get("state") == "Active" and s.get("framesCaptured", 0) >= 4,
        60,
        "Active with 4 frames",
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


# -- Any namespace, and a deleted stream's data (issue 13, items 3 and 6) ------


def status_in(cluster: ClusterRuntime, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kube.kubectl("-n", namespace, "get", "vstream", name, "-o", "json")
    found: dict[str, Any] = json.loads(out).get("status") or {}
    return found


def event_reasons(cluster: ClusterRuntime, namespace: str, name: str) -> dict[str, str]:
    """The Events about one VideoStream: reason -> the latest message."""
    selector = f"--field-selector=involvedObject.name={name},involvedObject.kind=VideoStream"
    out = cluster.kube.kubectl("-n", namespace, "get", "events", selector, "-o", "json")
    items = sorted(json.loads(out)["items"], key=lambda e: e["metadata"]["creationTimestamp"])
    return {e["reason"]: e["message"] for e in items}


def store_in(cluster: ClusterRuntime, namespace: str) -> FrameStore:
    """The store as the namespace's capture pods write it (<store>/<namespace>/<stream>/)."""
    env = cluster.operator_env
    return CommonSettings.model_validate(
        {
            "store_url": f"{env['STREAMGRID_STORE_URL']}/{namespace}",
            "s3_endpoint_url": env["STREAMGRID_S3_ENDPOINT_URL"],
            "s3_access_key_id": env["STREAMGRID_S3_ACCESS_KEY_ID"],
            "s3_secret_access_key": env["STREAMGRID_S3_SECRET_ACCESS_KEY"],
        }
    ).open_store()


def test_a_stream_in_another_namespace_runs_and_its_deletion_empties_its_prefix(
    cluster: ClusterRuntime, camera: Camera, capsys: pytest.CaptureFixture[str]
) -> None:
    """The namespace has nothing of ours: the operator makes the capture
    ServiceAccount, Role, RoleBinding and S3 Secret copy there, the pod runs
    (the stand-in reads its S3 keys from the copy); deleting the stream
    deletes its frames, manifest and grids."""
    namespace, name = "cams-elsewhere", "elsewhere"
    kubectl = cluster.kube.kubectl
    kubectl("create", "namespace", namespace)
    kubectl("label", "namespace", namespace, "streamgrid.io/capture=enabled")  # an admin's word
    logs = cluster.work / f"node-{namespace}"
    logs.mkdir(exist_ok=True)
    node = NodeStandIn(cluster.kube, namespace, logs).start()
    try:
        body = manifest(name, camera.url("/gray"), captureInterval=0.3, topK=3)
        kubectl("-n", namespace, "apply", "-f", "-", input_text=body)
        wait_until(
            lambda: status_in(cluster, namespace, name).get("framesCaptured", 0) >= 4,
            60,
            "4 frames in the other namespace",
            step=0.3,
        )
        assert status_in(cluster, namespace, name)["state"] == "Active"
        with capsys.disabled():
            print("\n" + kubectl("-n", namespace, "get", "vstream,sa,role,rolebinding,secret"))
        made = json.loads(
            kubectl(
                "-n",
                namespace,
                "get",
                "serviceaccounts,roles,rolebindings,secrets",
                "-l",
                "streamgrid.io/provisioned-by=streamgrid-operator",
                "-o",
                "json",
            )
        )["items"]
        assert {(m["kind"], m["metadata"]["name"]) for m in made} == {
            ("ServiceAccount", "streamgrid-capture"),
            ("Role", "streamgrid-capture"),
            ("RoleBinding", "streamgrid-capture"),
            ("Secret", "streamgrid-s3"),
        }
        secret = next(m for m in made if m["kind"] == "Secret")
        assert set(secret["data"]) == {"accessKeyId", "secretAccessKey"}
        pod = json.loads(kubectl("-n", namespace, "get", "pod", f"{name}-capture", "-o", "json"))
        assert pod["spec"]["serviceAccountName"] == "streamgrid-capture"
        store = store_in(cluster, namespace)
        wait_until(lambda: len(store.list_frames(name)) == 3, 30, "3 kept frames in the store")

        kubectl("-n", namespace, "delete", "vstream", name, "--wait=false")
        wait_until(
            lambda: kubectl("-n", namespace, "get", "vstream", name, check=False) == "",
            60,
            "the finalizer to finish the deletion",
        )
        assert list(store.objects.list(f"{name}/")) == []
        assert "deleted" in event_reasons(cluster, namespace, name)["DataDeleted"]
    finally:
        node.stop()
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def refuse(cluster: ClusterRuntime, namespace: str, resource: str) -> str:
    """A ValidatingAdmissionPolicy that refuses creating ``resource`` in the
    namespace, as the API server refuses what RBAC does not allow (403); in
    force once a server-side dry run is refused. Returns its name."""
    name = f"refuse-{resource}-in-{namespace}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": [resource],
                    }
                ]
            },
            "validations": [
                {"expression": "false", "message": f"no {resource} here", "reason": "Forbidden"}
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    for body in (policy, binding):
        cluster.kube.kubectl("apply", "-f", "-", input_text=json.dumps(body))
    probe = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "probe"}}
    if resource == "pods":
        probe = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe"},
            "spec": {"containers": [{"name": "c", "image": "none"}]},
        }

    def refused() -> bool:
        out = cluster.kube.kubectl(
            "-n", namespace, "create", "--dry-run=server", "-f", "-",
            input_text=json.dumps(probe), check=False,
        )  # fmt: skip
        return out == ""

    wait_until(refused, 30, f"the policy refusing {resource}", step=0.3)
    return name


def test_a_namespace_an_admin_has_not_enabled_gets_no_capture_pod(cluster: ClusterRuntime) -> None:
    """Capture pods hold the store's credentials: a namespace editor alone
    cannot bring them into a namespace. The stream says who must do what,
    and runs once the namespace is labelled."""
    namespace, name = "cams-not-enabled", "not-enabled"
    kubectl = cluster.kube.kubectl
    kubectl("create", "namespace", namespace)
    try:
        kubectl("-n", namespace, "apply", "-f", "-", input_text=manifest(name))
        why = (
            f"namespace {namespace} is not enabled for capture pods: an admin labels it "
            "streamgrid.io/capture=enabled"
        )
        wait_until(
            lambda: why in status_in(cluster, namespace, name).get("reason", ""),
            30,
            "the stream to say the namespace is not enabled",
            step=0.3,
        )
        secrets = json.loads(kubectl("-n", namespace, "get", "secrets", "-o", "json"))["items"]
        assert not [s for s in secrets if s["metadata"]["name"] == "streamgrid-s3"]
        assert "streamgrid-capture" not in kubectl("-n", namespace, "get", "serviceaccounts")
        kubectl("label", "namespace", namespace, "streamgrid.io/capture=enabled")
        wait_until(
            lambda: "streamgrid-s3" in kubectl("-n", namespace, "get", "secrets"),
            60,
            "the namespace provisioned once enabled",
            step=0.5,
        )
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_a_namespace_that_refuses_what_pods_need_says_why_on_the_stream(
    cluster: ClusterRuntime,
) -> None:
    """An admission policy stands in for missing RBAC (the stand-in's operator
    is an admin): the stream says what could not be made and why, in its
    status and an Event, never a blank STATE, and runs once that is fixed."""
    namespace, name = "cams-refused", "refused"
    kubectl = cluster.kube.kubectl
    kubectl("create", "namespace", namespace)
    kubectl("label", "namespace", namespace, "streamgrid.io/capture=enabled")  # an admin's word
    policies: list[str] = []
    try:
        policies.append(refuse(cluster, namespace, "serviceaccounts"))
        kubectl("-n", namespace, "apply", "-f", "-", input_text=manifest(name))
        wait_until(
            lambda: (
                "cannot create ServiceAccount streamgrid-capture in namespace cams-refused"
                in status_in(cluster, namespace, name).get("reason", "")
            ),
            30,
            "the provisioning failure in the status",
            step=0.3,
        )
        found = status_in(cluster, namespace, name)
        assert found["state"] == "Pending" and "no serviceaccounts here" in found["reason"]
        assert "forbidden" in event_reasons(cluster, namespace, name)["ProvisioningFailed"]
        described = kubectl("-n", namespace, "describe", "vstream", name)
        assert "ProvisioningFailed" in described and "cannot create ServiceAccount" in described

        # What the pod needs can be made now; the pod itself is refused: said the same way.
        policies.append(refuse(cluster, namespace, "pods"))
        kubectl("delete", "validatingadmissionpolicybinding", policies[0])
        wait_until(
            lambda: "ReconcileFailed" in event_reasons(cluster, namespace, name),
            30,
            "the refused pod in an Event",
            step=0.3,
        )
        assert "no pods here" in status_in(cluster, namespace, name)["reason"]
        kubectl("delete", "validatingadmissionpolicybinding", policies[1])
        wait_until(
            lambda: kubectl("-n", namespace, "get", "pod", f"{name}-capture", check=False) != "",
            30,
            "the capture pod once nothing refuses it",
        )
        kubectl("-n", namespace, "delete", "vstream", name, "--wait=false")
        wait_until(
            lambda: kubectl("-n", namespace, "get", "vstream", name, check=False) == "",
            60,
            "the stream to be deleted",
        )
    finally:
        for policy in policies:
            kubectl("delete", "validatingadmissionpolicybinding", policy, check=False)
            kubectl("delete", "validatingadmissionpolicy", policy, check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_the_ttl_deletes_a_streams_data_and_retain_keeps_it(
    cluster: ClusterRuntime, camera: Camera
) -> None:
    store = store_of(cluster.gateway)
    apply(cluster, manifest("data-gone", camera.url("/gray"), captureInterval=0.3, topK=2))
    apply(
        cluster,
        manifest(
            "data-kept", camera.url("/gray"), captureInterval=0.3, topK=2, dataRetention="Retain"
        ),
    )
    for name in ("data-gone", "data-kept"):
        wait_status(cluster, name, lambda s: s.get("framesCaptured", 0) >= 3, 60, "3 frames")
    cluster.kubectl(
        "patch",
        "vstream",
        "data-gone",
        "--type",
        "merge",
        "-p",
        '{"spec":{"state":"Stopped","ttlSecondsAfterStopped":1}}',
    )
    cluster.kubectl("delete", "vstream", "data-kept", "--wait=false")

    def both_gone() -> bool:
        return cluster.kubectl("get", "vstream", "data-gone", "data-kept", check=False) == ""

    wait_until(both_gone, 60, "the TTL and the deletion to finish")
    assert list(store.objects.list("data-gone/")) == []
    kept = store.get_manifest("data-kept")
    assert kept is not None and kept.final and len(store.list_frames("data-kept")) == 2


# -- the grid without the gateway (issue 13, item 2) ----------------------------
def stored_grid(cluster: ClusterRuntime, name: str) -> tuple[dict[str, Any], bytes]:
    """status.grid, and the object it names (read as the gateway reads the store)."""
    grid: dict[str, Any] = status(cluster, name)["grid"]
    data = store_of(cluster.gateway).get_grid(name, grid["name"])
    assert data is not None, grid
    return grid, data


def test_a_kubectl_stop_stores_the_grid_and_the_gateway_returns_it(
    cluster: ClusterRuntime, camera: Camera, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stopped with kubectl, the capture pod composes the stream's grid, stores
    it and names it in status.grid; the gateway's /stop returns those bytes."""
    name = "grid-at-stop"
    apply(cluster, manifest(name, camera.url("/gray"), captureInterval=0.3, topK=4))
    wait_status(cluster, name, lambda s: s.get("framesCaptured", 0) >= 6, 60, "6 frames")
    cluster.kubectl(
        "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"state":"Stopped"}}'
    )
    wait_status(cluster, name, lambda s: s.get("state") == "Stopped", 60, "Stopped")
    show(cluster, capsys, "stopped with kubectl")

    grid, data = stored_grid(cluster, name)
    expected = GridGeometry().name(4, 4)  # the gateway's name for the default geometry
    assert (grid["name"], grid["width"], grid["height"], grid["frames"]) == (expected, 600, 600, 4)
    assert grid["url"] == f"{status(cluster, name)['store']['url']}grids/{expected}"
    assert parse_utc(grid["composedAt"]) is not None
    assert jpeg_size(data) == (600, 600)
    with cluster.gateway.client() as client:
        response = client.post(f"/stop/{name}")
    assert response.status_code == 200, response.text
    assert response.content == data


def test_the_kubectl_plugin_starts_lists_stops_and_fetches_the_grid(
    cluster: ClusterRuntime, camera: Camera, s3: S3Server, tmp_path: Path
) -> None:
    """`kubectl streamgrid` through the real kubectl: start (credentials to a
    Secret), ls, grid of a running stream refused, stop -o from S3, and grid
    through the gateway with the kubeconfig's token."""
    plugin = KubectlPlugin(
        cluster.kube.kubeconfig,
        installed_plugin_dir(),
        cluster.namespace,
        {k: v for k, v in s3.env(BUCKET).items() if k != "STREAMGRID_STORE_URL"},
    )
    name = "plugin-stream"
    plugin.run("start", name, "--url", camera.secure_url(), "--interval", "0.3", "--top-k", "4")
    stream = cluster.stream(name)
    assert PASSWORD not in json.dumps(stream)
    assert stream["spec"]["source"]["credentialsSecretRef"] == {"name": f"{name}-credentials"}  # type: ignore[index]
    wait_status(cluster, name, lambda s: s.get("framesCaptured", 0) >= 6, 60, "6 frames")

    listing = plugin.run("ls").stdout.splitlines()
    assert listing[0].split()[:3] == ["NAME", "STATE", "DESIRED"]
    assert [line.split()[1:3] for line in listing if line.split()[0] == name] == [
        ["Active", "Running"]
    ]
    early = plugin.run("grid", name, "-o", str(tmp_path / "early.jpg"), check=False)
    assert early.returncode == 1
    assert f"{name} is still running (state Active)" in early.stderr
    assert not (tmp_path / "early.jpg").exists()

    plugin.run("stop", name, "-o", str(tmp_path / "from-s3.jpg"))
    assert status(cluster, name)["state"] == "Stopped"
    _, stored = stored_grid(cluster, name)
    assert (tmp_path / "from-s3.jpg").read_bytes() == stored
    plugin.run(
        "grid", name, "-o", str(tmp_path / "gateway.jpg"), "--gateway", cluster.gateway.base_url
    )
    assert (tmp_path / "gateway.jpg").read_bytes() == stored


def test_kubectl_streamgrid_status_shows_a_stream_on_one_screen(
    cluster: ClusterRuntime, camera: Camera
) -> None:
    plugin = KubectlPlugin(cluster.kube.kubeconfig, installed_plugin_dir(), cluster.namespace, {})
    name = "status-screen"
    plugin.run("start", name, "--url", camera.url("/gray"), "--interval", "0.3")
    wait_status(cluster, name, lambda s: s.get("state") == "Active", 60, "Active")
    wait_status(cluster, name, lambda s: s.get("framesCaptured", 0) >= 3, 60, "3 frames")
    screen = plugin.run("status", name).stdout
    assert f"VideoStream {cluster.namespace}/{name}" in screen
    assert "State:        Active (desired Running)" in screen
    assert f"Pod:          {name}-capture Running" in screen
    assert f"/{cluster.namespace}/{name}/" in screen  # the store prefix
    assert "ago" in screen.split("Last sample:")[1].splitlines()[0]
    conditions = screen.split("Conditions:")[1].split("Events:")[0]
    rows = {line.split()[0]: line.split()[1] for line in conditions.splitlines()[2:] if line}
    assert rows["Ready"] == "True" and rows["Reconciling"] == "False"
    assert rows["Stalled"] == "False"
    assert "PodCreated" in screen.split("Events:")[1]
    missing = plugin.run("status", "no-such-stream", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
    cluster.kubectl("delete", "vstream", name)


# -- The pod against the spec, failures that explain themselves (issue 13, items 1, 4, 7, 9) --


def stream_events(cluster: ClusterRuntime, name: str) -> list[tuple[str, str]]:
    """(reason, message) of the Events about one VideoStream, oldest first."""
    selector = f"--field-selector=involvedObject.name={name},involvedObject.kind=VideoStream"
    items = json.loads(cluster.kubectl("get", "events", selector, "-o", "json"))["items"]
    items.sort(key=lambda e: e["metadata"]["creationTimestamp"])
    return [(e["reason"], e["message"]) for e in items]


def capture_pod_of(cluster: ClusterRuntime, name: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", "pod", f"{name}-capture", "-o", "json", check=False)
    return json.loads(out) if out else None


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def test_an_edited_interval_replaces_the_pod_and_the_rate_follows(
    cluster: ClusterRuntime, camera: Camera, capsys: pytest.CaptureFixture[str]
) -> None:
    """captureInterval 1 -> 0.2 on a running stream: a new pod with the new
    env samples about 5 a second, observedGeneration moves only once it runs,
    and an Event says what changed. (The old operator kept the old pod.)"""
    name = "edited-interval"
    apply(cluster, manifest(name, camera.url("/gray"), captureInterval=1, topK=4))
    wait_status(
        cluster,
        name,
        lambda s: s.get("state") == "Active" and s.get("framesCaptured", 0) >= 3,
        60,
        "Active with 3 frames",
    )
    old = capture_pod_of(cluster, name)
    assert old is not None and env_of(old)["STREAMGRID_CAPTURE_INTERVAL"] == "1.0"
    assert status(cluster, name)["observedGeneration"] == 1
    cluster.kubectl(
        "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"captureInterval":0.2}}'
    )
    seen: list[tuple[Any, str | None]] = []  # (observedGeneration, the pod's uid) as polled

    def replaced() -> bool:
        observed = status(cluster, name).get("observedGeneration")  # read first, then the pod
        pod = capture_pod_of(cluster, name)
        seen.append((observed, pod["metadata"]["uid"] if pod else None))
        return (
            observed == 2 and pod is not None and pod["metadata"]["uid"] != old["metadata"]["uid"]
        )

    wait_until(replaced, 60, "a new capture pod and observedGeneration 2", step=0.2)
    assert all(gen == 1 for gen, uid in seen if uid == old["metadata"]["uid"]), seen
    new = capture_pod_of(cluster, name)
    assert new is not None and env_of(new)["STREAMGRID_CAPTURE_INTERVAL"] == "0.2"
    wait_status(cluster, name, lambda s: s.get("state") == "Active", 60, "Active again")
    count = status(cluster, name)["framesCaptured"]
    # 10 samples take 2 s at the new interval; the old one could not make 8 s.
    wait_status(
        cluster, name, lambda s: s["framesCaptured"] >= count + 10, 8, "the new sampling rate"
    )
    show(cluster, capsys, "after captureInterval 1 -> 0.2")
    replaced_events = [m for r, m in stream_events(cluster, name) if r == "PodReplaced"]
    assert replaced_events and "captureInterval 1.0 -> 0.2" in replaced_events[0]
    assert "PodLost" not in dict(stream_events(cluster, name))  # ours, not lost
    final = status(cluster, name)
    assert final.get("restarts", 0) == 0
    conditions = {c["type"]: c for c in final["conditions"]}
    assert conditions["SpecApplied"]["status"] == "True"
    cluster.kubectl(
        "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"state":"Stopped"}}'
    )
    wait_status(cluster, name, lambda s: s.get("state") == "Stopped", 60, "Stopped")
    kept = store_of(cluster.gateway).get_manifest(name)
    assert kept is not None and len(kept.kept) == 4  # the top K carried over


def test_a_missing_secret_says_so_and_the_stream_runs_once_it_exists(
    cluster: ClusterRuntime, camera: Camera
) -> None:
    """The old operator made the pod anyway (optional references) and the
    stream failed with the camera's 401."""
    name, secret = "missing-secret", "missing-secret-creds"
    url = f"rtsp://{camera.host}:{camera.secure_port}/gray"
    apply(
        cluster,
        manifest(name, url, captureInterval=0.5).replace(
            '"url": "rtsp', f'"credentialsSecretRef": {{"name": "{secret}"}}, "url": "rtsp'
        ),
    )
    why = f"credentials Secret {secret} not found in namespace {cluster.namespace}"
    wait_status(cluster, name, lambda s: s.get("reason") == why, 30, "the missing Secret named")
    described = cluster.kubectl("describe", "vstream", name)
    assert "SecretMissing" in described and why in described, described
    assert status(cluster, name)["state"] == "Pending"
    conditions = {c["type"]: c for c in status(cluster, name)["conditions"]}
    assert conditions["CredentialsFound"]["status"] == "False"
    assert capture_pod_of(cluster, name) is None  # no pod to fail with a 401

    cluster.kubectl(
        "create",
        "secret",
        "generic",
        secret,
        "--from-literal=username=viewer",
        f"--from-literal=password={PASSWORD}",
    )
    wait_status(
        cluster,
        name,
        lambda s: s.get("state") == "Active" and s.get("framesCaptured", 0) >= 2,
        60,
        "Active once the Secret exists",
    )
    assert {c["type"]: c["status"] for c in status(cluster, name)["conditions"]}[
        "CredentialsFound"
    ] == "True"
    cluster.kubectl(
        "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"state":"Stopped"}}'
    )


def test_a_failed_stream_is_retried_by_annotation_and_by_a_fixed_secret(
    cluster: ClusterRuntime, camera: Camera
) -> None:
    """Failed stayed Failed until the spec changed; now the streamgrid.io/retry
    annotation retries it, and so does a change to its credentials Secret."""
    name, secret = "retried", "retried-creds"
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        secret,
        "--from-literal=username=viewer",
        "--from-literal=password=not-the-password",
    )
    url = f"rtsp://{camera.host}:{camera.secure_port}/gray"
    apply(
        cluster,
        manifest(name, url, captureInterval=0.5).replace(
            '"url": "rtsp', f'"credentialsSecretRef": {{"name": "{secret}"}}, "url": "rtsp'
        ),
    )
    wait_status(cluster, name, lambda s: s.get("state") == "Failed", 60, "Failed (401)")
    assert "401" in status(cluster, name)["reason"]
    started = cluster.node.started_count

    cluster.kubectl("annotate", "vstream", name, "streamgrid.io/retry=1")
    wait_until(
        lambda: any(r == "Retrying" for r, _ in stream_events(cluster, name)),
        30,
        "a Retrying event",
    )
    retrying = [m for r, m in stream_events(cluster, name) if r == "Retrying"]
    assert "streamgrid.io/retry annotation changed" in retrying[0]
    wait_until(lambda: cluster.node.started_count > started, 30, "a new capture pod")
    wait_status(cluster, name, lambda s: s.get("state") == "Failed", 60, "Failed again (401)")

    cluster.kubectl(
        "patch", "secret", secret, "-p", json.dumps({"stringData": {"password": PASSWORD}})
    )
    wait_status(
        cluster,
        name,
        lambda s: s.get("state") == "Active" and s.get("framesCaptured", 0) >= 2,
        60,
        "Active with the fixed Secret",
    )
    retrying = [m for r, m in stream_events(cluster, name) if r == "Retrying"]
    assert any("credentials Secret changed" in m for m in retrying), retrying
    assert status(cluster, name).get("stoppedAt") is None  # running again
    cluster.kubectl(
        "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"state":"Stopped"}}'
    )


# -- the CRD as kubectl shows it (issue 13, items 4, 5, 8, 9) -----------------


def _schema_fields(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for key, child in (node.get("properties") or {}).items():
        found += [(f"{path}.{key}", child), *_schema_fields(child, f"{path}.{key}")]
    if "items" in node:
        found += _schema_fields(node["items"], path)
    return found


def test_kubectl_explain_describes_every_field(cluster: ClusterRuntime) -> None:
    """What the API server publishes (kubectl explain reads it): a description
    on the kind and every field of spec and status, all the way down."""
    published = json.loads(
        cluster.kubectl("get", "--raw", "/openapi/v3/apis/streamgrid.io/v1alpha1")
    )
    kind = published["components"]["schemas"]["io.streamgrid.v1alpha1.VideoStream"]
    assert kind.get("description")
    fields = [(p, n) for p, n in _schema_fields(kind, "vstream") if p != "vstream.metadata"]
    assert len(fields) > 40
    assert [path for path, node in fields if not node.get("description")] == []
    for path in ("vstream", "vstream.spec.topK", "vstream.spec.grid.tileWidth", "vstream.status"):
        out = cluster.kubectl("explain", path)
        assert "<no description>" not in out and "<empty>" not in out, out
    assert "16 to 2000" in cluster.kubectl("explain", "vstream.spec.grid.tileWidth")


@pytest.mark.parametrize(
    ("name", "spec", "says", "secret"),
    [
        ("bad-interval", {"captureInterval": -1}, "must be between 0.04 and 86400 seconds", ""),
        ("bad-interval", {"captureInterval": 0.01}, "must be between 0.04 and 86400 seconds", ""),
        (
            "bad-url",
            {"source": {"url": "rtsp://viewer:hunter2x@cam/x"}},
            "user:password@",
            "hunter2x",
        ),
        (
            "bad-url",
            {"source": {"url": "rtsp://cam/x?ch=1&token=abc123"}},
            "in its query",
            "abc123",
        ),
        (
            "bad-url",
            {"source": {"url": "rtsp://cam/user=admin&password=Pw1x&channel=1"}},
            "in its path",
            "Pw1x",
        ),
        ("cam.lobby.v2", {}, "no dots", ""),
    ],
)
def test_bad_specs_say_the_real_bounds_and_never_echo_a_secret(
    cluster: ClusterRuntime, name: str, spec: dict[str, Any], says: str, secret: str
) -> None:
    body = json.loads(manifest(name))
    body["spec"].update(spec)
    with pytest.raises(RuntimeError) as refused:
        apply(cluster, json.dumps(body))
    message = str(refused.value)
    assert says in message
    assert "greater than or equal" not in message  # the old message said "to 0" for -1
    assert 'Invalid value: "number"' not in message
    if secret:
        assert secret not in message
    assert cluster.kubectl("get", "vstream", name, check=False) == ""


def test_the_gateway_keeps_url_secrets_out_of_the_spec_the_crd_takes(
    cluster: ClusterRuntime, camera: Camera
) -> None:
    """Query and Dahua-style path secrets go to a Secret; the spec the CRD
    now checks takes what the gateway leaves (a path's password=***)."""
    base = camera.url("/gray").rsplit("/", 1)[0]
    for url in (f"{base}/gray?token=abc123", f"{base}/user=admin&password=Pw1x&channel=1"):
        with cluster.gateway.client() as client:
            response = client.post("/start", data={"rtsp_url": url})
            assert response.status_code == 200, response.text
            name = response.json()["stream_id"]
        stream = json.dumps(cluster.stream(name))
        assert "abc123" not in stream and "Pw1x" not in stream
        cluster.kubectl(
            "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"state":"Stopped"}}'
        )


def test_the_reason_column_says_why_a_stream_is_not_active(cluster: ClusterRuntime) -> None:
    name = "no-camera"
    apply(cluster, manifest(name, "rtsp://127.0.0.1:9/x", captureInterval=1))
    wait_status(cluster, name, lambda s: s.get("reason"), 60, "a reason")
    table = cluster.kubectl("get", "vstream", name)
    header, row = table.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "STATE", "FRAMES", "INTERVAL", "REASON"]
    assert status(cluster, name)["reason"][:20] in row
    cluster.kubectl("delete", "vstream", name)


def test_the_operator_shuts_down_without_cancelling_daemons(
    cluster: ClusterRuntime, camera: Camera
) -> None:
    """Each stream's periodic daemon ends on the stop flag: the old one slept
    through it and Kopf cancelled it, one warning per stream at shutdown."""
    name = "quiet-shutdown"
    apply(cluster, manifest(name, camera.url("/gray"), captureInterval=1))
    wait_status(cluster, name, lambda s: s.get("state") == "Active", 60, "Active")
    log = cluster.operator.log_path
    cluster.restart_operator()
    text = log.read_text()
    assert "is cancelled" not in text and "did not exit" not in text
    cluster.kubectl(
        "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"state":"Stopped"}}'
    )
    wait_status(cluster, name, lambda s: s.get("state") == "Stopped", 60, "Stopped")
