"""The user's path on a real node: the chart installed by Helm, capture pods run
by a real kubelet in real containers (containerd, runc), reached through the
gateway's Service (kube-proxy), frames in a real S3 server. The tests run in
file order: the last one uninstalls the release."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamgrid.core.settings import CommonSettings
from testbed.api import assert_grid_of_brightest, assert_no_kept_frame_lost, details, start
from testbed.kube import BIN
from testbed.kubenode import NODE_NAME
from testbed.plugin import KubectlPlugin, installed_plugin_dir
from testbed.processes import wait_until
from testbed.release import ACCESS_KEY, CHART, NAMESPACE, RELEASE, SECRET_KEY, NodeCluster

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


def apply_stream(cluster: NodeCluster, name: str, source: dict[str, Any], interval: float) -> None:
    """A VideoStream made with kubectl, as a user without the gateway would."""
    body = {
        "apiVersion": "streamgrid.io/v1alpha1",
        "kind": "VideoStream",
        "metadata": {"name": name},
        "spec": {"source": source, "captureInterval": interval},
    }
    cluster.kube.kubectl("-n", NAMESPACE, "apply", "-f", "-", input_text=json.dumps(body))


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


def test_web_pages_cannot_use_the_gateway_with_the_charts_defaults(
    node_cluster: NodeCluster,
) -> None:
    """The chart's allowed names serve (its Service by every name, the node's
    address as the kubelet's probes use); a rebound name and a cross-site
    form are refused."""
    service = f"{RELEASE}-streamgrid-gateway"
    with node_cluster.client() as client:
        for host in (service, f"{service}.{NAMESPACE}.svc.cluster.local", "localhost"):
            assert client.get("/list", headers={"host": host}).status_code == 200, host
        rebound = client.get("/healthz", headers={"host": "rebind.evil.example"})
        assert rebound.status_code == 421 and "STREAMGRID_ALLOWED_HOSTS" in rebound.text
        before = client.get("/list").json()["active_streams"]
        form = client.post(
            "/start",
            content=f"rtsp_url={node_cluster.camera.url()}",
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "origin": "http://evil.example",
            },
        )
        assert (form.status_code, form.text) == (
            403,
            "Cross-site request refused: http://evil.example",
        )
        assert client.get("/list").json()["active_streams"] == before
    gateway = [p for p in node_cluster.pods() if "gateway" in p["metadata"]["name"]]  # type: ignore[index]
    assert gateway and all(
        all(c["ready"] for c in p["status"]["containerStatuses"])  # type: ignore[index]
        for p in gateway
    )


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
    from testbed.camera import PASSWORD

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


def test_kubectl_streamgrid_stops_a_stream_and_fetches_its_grid(
    node_cluster: NodeCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the gateway: `kubectl streamgrid start`, `stop`, `grid -o FILE`
    from the chart's MinIO. The capture pod composed the grid at stop and
    named it in status.grid; the gateway, asked with the kubeconfig's token,
    returns the same bytes."""
    plugin = KubectlPlugin(
        node_cluster.kube.kubeconfig,
        installed_plugin_dir(),
        NAMESPACE,
        {
            "STREAMGRID_S3_ENDPOINT_URL": node_cluster.s3_endpoint,
            "STREAMGRID_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "STREAMGRID_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        },
    )
    name = "plugin-grid"
    camera = node_cluster.camera
    plugin.run("start", name, "--url", camera.url("/gray"), "--interval", "0.2")
    wait_until(lambda: running(pod_of(node_cluster, name)), 90, "a running capture pod")
    wait_until(
        lambda: vstream(node_cluster, name)["status"].get("framesCaptured", 0) >= 35,
        60,
        "35 samples",
        step=0.5,
    )
    plugin.run("stop", name)
    show(node_cluster, capsys, "stopped with kubectl streamgrid")
    assert pod_of(node_cluster, name) is None

    grid = vstream(node_cluster, name)["status"]["grid"]
    assert (grid["width"], grid["height"], grid["frames"]) == (900, 900, 9)
    plugin.run("grid", name, "-o", str(tmp_path / "grid.jpg"))
    fetched = (tmp_path / "grid.jpg").read_bytes()
    store = node_cluster.store()
    assert fetched == store.get_grid(name, grid["name"])
    manifest = store.get_manifest(name)
    assert manifest is not None
    assert_grid_of_brightest(fetched, manifest, camera)

    gateway = tmp_path / "gateway.jpg"
    plugin.run("grid", name, "-o", str(gateway), "--gateway", node_cluster.gateway_url)
    assert gateway.read_bytes() == fetched


def test_a_capture_pod_passes_its_liveness_probe_while_capturing(
    node_cluster: NodeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """The kubelet probes the worker's /healthz (capture/health.py): a
    capturing pod outlives the probe's whole failure budget (initial delay +
    failureThreshold x period), is neither restarted nor marked Unhealthy,
    and the endpoint answers inside the pod."""
    name = "liveness"
    apply_stream(node_cluster, name, {"url": node_cluster.camera.url("/gray")}, 0.5)
    wait_until(lambda: running(pod_of(node_cluster, name)), 90, "a running capture pod")
    pod = pod_of(node_cluster, name)
    assert pod is not None
    probe = pod["spec"]["containers"][0]["livenessProbe"]
    assert probe["httpGet"]["path"] == "/healthz"
    budget = probe["initialDelaySeconds"] + probe["failureThreshold"] * probe["periodSeconds"]

    def probed_long_enough() -> bool:
        found = pod_of(node_cluster, name)
        status = (found or {}).get("status", {}).get("containerStatuses") or [{}]
        started = (status[0].get("state") or {}).get("running", {}).get("startedAt")
        age = time.time() - datetime.fromisoformat(started).timestamp() if started else 0.0
        return bool(age > budget + 5)

    wait_until(probed_long_enough, budget + 60, "the probe's failure budget to pass")
    after = pod_of(node_cluster, name)
    assert after is not None and running(after)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0
    events = json.loads(
        node_cluster.kubectl(
            "get", "events", "--field-selector", f"involvedObject.name={name}-capture", "-o", "json"
        )
    )["items"]
    assert [e["message"] for e in events if e["reason"] == "Unhealthy"] == []
    code = (
        "import urllib.request; print(urllib.request.urlopen("
        "'http://127.0.0.1:8081/healthz', timeout=5).status)"
    )
    answer = node_cluster.kubectl("exec", f"{name}-capture", "--", "python", "-c", code)
    assert answer.strip() == "200"
    assert vstream(node_cluster, name)["status"]["state"] == "Active"
    show(node_cluster, capsys, "capturing past the liveness probe's failure budget")
    node_cluster.kubectl("delete", "vstream", name, "--wait=false")


def test_a_stream_in_a_second_namespace_runs_and_deleting_it_empties_its_prefix(
    node_cluster: NodeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """A namespace the release never touched: the chart's operator, with the
    chart's RBAC, makes the capture ServiceAccount, Role, RoleBinding and S3
    Secret there; the pod runs as that account and reports into its stream's
    status (the Role works). Deleting the stream empties its MinIO prefix."""
    namespace, name = "cams-second", "second"
    kubectl = node_cluster.kube.kubectl
    kubectl("create", "namespace", namespace)
    kubectl("label", "namespace", namespace, "streamgrid.io/capture=enabled")  # an admin's word
    try:
        body = {
            "apiVersion": "streamgrid.io/v1alpha1",
            "kind": "VideoStream",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "source": {"url": node_cluster.camera.url("/gray")},
                "captureInterval": 0.3,
                "topK": 3,
            },
        }
        kubectl("apply", "-f", "-", input_text=json.dumps(body))

        def stream_status() -> dict[str, Any]:
            out = kubectl("-n", namespace, "get", "vstream", name, "-o", "json")
            found: dict[str, Any] = json.loads(out).get("status") or {}
            return found

        try:
            wait_until(
                lambda: stream_status().get("framesCaptured", 0) >= 4, 120, "4 samples", step=0.5
            )
        except TimeoutError:
            pods = kubectl("-n", namespace, "describe", "pods", check=False)
            seen = kubectl("-n", namespace, "get", "vstream,events,sa,role,secret", check=False)
            capture = kubectl("-n", namespace, "logs", f"{name}-capture", check=False)
            raise AssertionError(f"{seen}\n{pods}\n{capture}\n{node_cluster.logs()}") from None
        assert stream_status()["state"] == "Active"
        with capsys.disabled():
            print(f"\n$ kubectl -n {namespace} get vstream,pods,sa,role,rolebinding,secret")
            print(kubectl("-n", namespace, "get", "vstream,pods,sa,role,rolebinding,secret"))
        made = json.loads(
            kubectl(
                "-n", namespace, "get", "serviceaccounts,roles,rolebindings,secrets",
                "-l", "streamgrid.io/provisioned-by=streamgrid-operator", "-o", "json",
            )
        )["items"]  # fmt: skip
        assert {(m["kind"], m["metadata"]["name"]) for m in made} == {
            ("ServiceAccount", "streamgrid-capture"),
            ("Role", "streamgrid-capture"),
            ("RoleBinding", "streamgrid-capture"),
            ("Secret", f"{RELEASE}-streamgrid-s3"),
        }
        pod = json.loads(kubectl("-n", namespace, "get", "pod", f"{name}-capture", "-o", "json"))
        assert pod["spec"]["serviceAccountName"] == "streamgrid-capture"
        store = CommonSettings.model_validate(
            {
                "store_url": f"s3://node/frames/{namespace}",
                "s3_endpoint_url": node_cluster.s3_endpoint,
                "s3_access_key_id": ACCESS_KEY,
                "s3_secret_access_key": SECRET_KEY,
            }
        ).open_store()
        wait_until(lambda: len(store.list_frames(name)) == 3, 30, "3 kept frames in MinIO")

        kubectl("-n", namespace, "delete", "vstream", name, "--wait=false")
        wait_until(
            lambda: kubectl("-n", namespace, "get", "vstream", name, check=False) == "",
            90,
            "the operator's finalizer to finish the deletion",
            step=0.5,
        )
        assert list(store.objects.list(f"{name}/")) == []
        events = kubectl(
            "-n", namespace, "get", "events", f"--field-selector=involvedObject.name={name}"
        )
        assert "DataDeleted" in events, events
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_an_edited_interval_replaces_the_pod_and_it_samples_at_the_new_rate(
    node_cluster: NodeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 13 item 1 on the real node: `kubectl patch` captureInterval 1 ->
    0.2 replaces the capture pod (the kubelet stops the old one gracefully),
    the new pod has the new env and samples about 5 a second, and
    observedGeneration says 2 only once it runs."""
    name = "edited-interval"
    apply_stream(node_cluster, name, {"url": node_cluster.camera.url("/gray")}, 1)

    def stream_status() -> dict[str, Any]:
        found: dict[str, Any] = vstream(node_cluster, name).get("status") or {}
        return found

    wait_until(
        lambda: stream_status().get("framesCaptured", 0) >= 3,
        120,
        "3 samples at 1 a second",
        step=0.5,
    )
    old = pod_of(node_cluster, name)
    assert old is not None and stream_status()["observedGeneration"] == 1
    node_cluster.kubectl(
        "patch", "vstream", name, "--type", "merge", "-p", '{"spec":{"captureInterval":0.2}}'
    )
    seen: list[tuple[Any, str | None]] = []  # (observedGeneration, the pod's uid) as polled

    def replaced() -> bool:
        observed = stream_status().get("observedGeneration")
        pod = pod_of(node_cluster, name)
        seen.append((observed, pod["metadata"]["uid"] if pod else None))
        return observed == 2 and running(pod) and pod["metadata"]["uid"] != old["metadata"]["uid"]  # type: ignore[index]

    wait_until(replaced, 120, "a new running capture pod, observedGeneration 2", step=0.5)
    assert all(gen == 1 for gen, uid in seen if uid == old["metadata"]["uid"]), seen
    new = pod_of(node_cluster, name)
    assert new is not None
    env = {e["name"]: e.get("value") for e in new["spec"]["containers"][0]["env"]}
    assert env["STREAMGRID_CAPTURE_INTERVAL"] == "0.2"
    wait_until(
        lambda: stream_status().get("state") == "Active",
        60,
        "Active again",
        step=0.5,
    )
    count = stream_status()["framesCaptured"]
    # 10 samples take 2 s at the new interval; the old one could not make 8 s.
    wait_until(
        lambda: stream_status()["framesCaptured"] >= count + 10,
        8,
        "the new sampling rate",
        step=0.3,
    )
    show(node_cluster, capsys, "after captureInterval 1 -> 0.2")
    events = node_cluster.kubectl(
        "get",
        "events",
        f"--field-selector=involvedObject.name={name},involvedObject.kind=VideoStream",
    )
    assert "PodReplaced" in events and "captureInterval 1.0 -> 0.2" in events, events
    node_cluster.kubectl("delete", "vstream", name, "--wait=false")


def test_a_missing_credentials_secret_shows_in_kubectl_describe(node_cluster: NodeCluster) -> None:
    """Issue 13 item 7 on the real node: a stream whose credentials Secret is
    not there says so (status, condition, Event in `kubectl describe`) and
    makes no pod; once the Secret exists, it runs."""
    from testbed.camera import PASSWORD, USER

    camera = node_cluster.camera
    name, secret = "missing-secret", "missing-secret-credentials"
    source = {
        "url": f"rtsp://{camera.host}:{camera.secure_port}/gray",
        "credentialsSecretRef": {"name": secret},
    }
    apply_stream(node_cluster, name, source, 0.5)
    why = f"credentials Secret {secret} not found in namespace {NAMESPACE}"

    def status() -> dict[str, Any]:
        found: dict[str, Any] = vstream(node_cluster, name).get("status") or {}
        return found

    wait_until(lambda: status().get("reason") == why, 60, "the missing Secret named", step=0.5)
    described = node_cluster.kubectl("describe", "vstream", name)
    assert "SecretMissing" in described and why in described, described
    assert pod_of(node_cluster, name) is None  # no pod to fail with the camera's 401
    node_cluster.kubectl(
        "create",
        "secret",
        "generic",
        secret,
        f"--from-literal=username={USER}",
        f"--from-literal=password={PASSWORD}",
    )
    wait_until(
        lambda: status().get("state") == "Active" and status().get("framesCaptured", 0) >= 2,
        120,
        "Active once the Secret exists",
        step=0.5,
    )
    node_cluster.kubectl("delete", "vstream", name, "--wait=false")


def test_the_gateway_and_a_capture_pod_serve_prometheus_metrics(
    node_cluster: NodeCluster,
) -> None:
    """Scraped as Prometheus would: the gateway's /metrics through its Service
    (with a token: the chart keeps metrics behind authentication by default)
    and a capture pod's on its health port; their counters move with a stream."""
    from prometheus_client.parser import text_string_to_metric_families

    def parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(text: str, name: str, **labels: str) -> float:
        return parsed(text).get((name, tuple(sorted(labels.items()))), 0.0)

    gateway = f"{RELEASE}-streamgrid-gateway"
    annotations = json.loads(node_cluster.kubectl("get", "deploy", gateway, "-o", "json"))["spec"][
        "template"
    ]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    with node_cluster.client(token="") as anonymous:
        assert anonymous.get("/metrics").status_code == 401
    with node_cluster.client() as client:
        before = client.get("/metrics")
        assert before.status_code == 200, before.text
        stream_id = start(client, node_cluster.camera.url("/gray"), capture_interval=0.3)
        wait_until(lambda: running(pod_of(node_cluster, stream_id)), 90, "a running capture pod")
        wait_until(
            lambda: details(client, stream_id)["frames_captured"] >= 5, 60, "5 samples", step=0.5
        )
        code = (
            "import urllib.request; print(urllib.request.urlopen("
            "'http://127.0.0.1:8081/metrics', timeout=5).read().decode())"
        )
        pod_text = node_cluster.kubectl("exec", f"{stream_id}-capture", "--", "python", "-c", code)
        mine = {"stream_id": stream_id}
        assert value(pod_text, "streamgrid_capture_samples_total", **mine) >= 5
        assert value(pod_text, "streamgrid_capture_bytes_received_total", **mine) > 0
        assert value(pod_text, "streamgrid_capture_packets_received_total", **mine) > 0
        assert value(pod_text, "streamgrid_capture_decode_seconds_count", **mine) > 0
        assert value(pod_text, "process_resident_memory_bytes") > 0
        during = client.get("/metrics").text
        assert value(during, "streamgrid_streams", state="Active") >= 1
        stopped = client.post(f"/stop/{stream_id}")
        assert stopped.status_code == 200, stopped.text
        after = client.get("/metrics").text
    start_route = {"route": "/start", "method": "POST", "code": "200"}
    requests = "streamgrid_http_requests_total"
    assert value(after, requests, **start_route) == value(before.text, requests, **start_route) + 1
    grids = sum(value(after, "streamgrid_grids_total", source=s) for s in ("composed", "stored"))
    grids_before = sum(
        value(before.text, "streamgrid_grids_total", source=s) for s in ("composed", "stored")
    )
    assert grids == grids_before + 1


def component_pods(cluster: NodeCluster, component: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get", "pods", "-l", f"app.kubernetes.io/component={component}", "-o", "json"
    )
    found: list[dict[str, Any]] = json.loads(out)["items"]
    return found


def ready_replicas(cluster: NodeCluster, component: str) -> int:
    out = cluster.kubectl("get", "deploy", f"{RELEASE}-streamgrid-{component}", "-o", "json")
    return int(json.loads(out)["status"].get("readyReplicas") or 0)


def unschedulable(pod: dict[str, Any] | None) -> bool:
    """Pending because the scheduler found no node for it (the scheduler's
    own word, in the PodScheduled condition), not merely not yet started."""
    if pod is None or pod["status"].get("phase") != "Pending" or pod["spec"].get("nodeName"):
        return False
    return any(
        c["type"] == "PodScheduled"
        and c["status"] == "False"
        and c.get("reason") == "Unschedulable"
        for c in pod["status"].get("conditions", [])
    )


LEASE = f"{RELEASE}-streamgrid-operator"


def all_pods(cluster: NodeCluster) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(cluster.kubectl("get", "pods", "-o", "json"))["items"]
    return found


def operator_pods(cluster: NodeCluster) -> list[dict[str, Any]]:
    pods = [p for p in all_pods(cluster) if "-operator-" in p["metadata"]["name"]]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def lease_holder(cluster: NodeCluster) -> str:
    lease = json.loads(cluster.kubectl("get", "lease", LEASE, "-o", "json", check=False) or "{}")
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def leader_gauge(pod: dict[str, Any]) -> float | None:
    """streamgrid_operator_leader as the pod serves it on its metrics port."""
    ip = pod["status"].get("podIP")
    try:
        text = httpx.get(f"http://{ip}:9090/metrics", timeout=3).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("streamgrid_operator_leader "):
            return float(line.split()[1])
    return None


def stream_events(cluster: NodeCluster, name: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.name={name},involvedObject.kind=VideoStream"
    items = json.loads(cluster.kubectl("get", "events", "--field-selector", selector, "-o", "json"))
    return list(items["items"])


def test_two_operators_one_leads_and_a_killed_leader_is_taken_over(
    node_cluster: NodeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 23 item 1 with the chart's two replicas: one holds the Lease
    (its metrics say 1, the other's 0); SIGKILL of the leader's container
    and the standby reconciles within 20 s: an edit made then is applied,
    with no pod, Event or restart counted twice."""
    pods = operator_pods(node_cluster)
    assert len(pods) == 2
    wait_until(lambda: lease_holder(node_cluster) != "", 60, "a leader")
    names = [str(p["metadata"]["name"]) for p in pods]
    leader = next(
        p for p in pods if lease_holder(node_cluster).startswith(p["metadata"]["name"] + "-")
    )
    standby = next(p for p in pods if p is not leader)
    wait_until(lambda: leader_gauge(leader) == 1.0, 30, "the leader's metrics")
    assert leader_gauge(standby) == 0.0
    with node_cluster.client() as client:
        stream_id = start(client, node_cluster.camera.url("/gray"), capture_interval=0.5)
        wait_until(lambda: running(pod_of(node_cluster, stream_id)), 90, "a running capture pod")
        container = next(
            c["containerID"].removeprefix("containerd://")
            for c in leader["status"]["containerStatuses"]
        )
        node_cluster.node.ctr("tasks", "kill", "-s", "SIGKILL", container)
        killed = time.monotonic()
        wait_until(
            lambda: lease_holder(node_cluster).startswith(str(standby["metadata"]["name"]) + "-"),
            25,
            "the standby to take the Lease",
            step=0.5,
        )
        assert time.monotonic() - killed <= 20
        node_cluster.kubectl(
            "patch", "vstream", stream_id, "--type", "merge", "-p", '{"spec":{"topK":4}}'
        )
        wait_until(
            lambda: (
                vstream(node_cluster, stream_id)["status"].get("observedGeneration") == 2
                and vstream(node_cluster, stream_id)["status"].get("state") == "Active"
            ),
            120,
            "the edit applied by the new leader",
            step=0.5,
        )
        show(node_cluster, capsys, "after the leader was killed and the stream edited")
        status = vstream(node_cluster, stream_id)["status"]
        assert not status.get("restarts"), status
        events = stream_events(node_cluster, stream_id)
        reasons = [e["reason"] for e in events]
        assert "PodLost" not in reasons and "PodExited" not in reasons, reasons
        created = sum(int(e.get("count") or 1) for e in events if e["reason"] == "PodCreated")
        assert created == 2, events  # the first pod, and the edit's replacement
        assert client.post(f"/stop/{stream_id}").status_code == 200
    # The killed container comes back (the kubelet restarts it) as a standby.
    wait_until(lambda: len(operator_pods(node_cluster)) == 2, 90, "two operators again")
    assert sorted(str(p["metadata"]["name"]) for p in operator_pods(node_cluster)) == sorted(names)


def without_running_pod(cluster: NodeCluster, streams: list[str]) -> set[str]:
    pods = {
        p["metadata"]["labels"]["streamgrid.io/stream"]: p
        for p in all_pods(cluster)
        if "streamgrid.io/stream" in (p["metadata"].get("labels") or {})
    }
    down = set()
    for stream in streams:
        pod = pods.get(stream)
        if pod is None or pod["metadata"].get("deletionTimestamp") or not running(pod):
            down.add(stream)
    return down


def images_of(cluster: NodeCluster, streams: list[str]) -> dict[str, str]:
    found = {}
    for stream in streams:
        pod = pod_of(cluster, stream)
        if pod is not None and not pod["metadata"].get("deletionTimestamp"):
            found[stream] = pod["spec"]["containers"][0]["image"]
    return found


def test_a_new_capture_image_is_rolled_out_two_at_a_time_and_rolled_back(
    node_cluster: NodeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 23 item 3: six streams capturing; `helm upgrade` to a new capture
    image tag with operator.maxUnavailable 2: never more than two streams
    without a running pod at once, no kept frame lost, counts carried over;
    an operator-only upgrade replaces no capture pod; then `helm rollback`."""
    store, top_k = node_cluster.store(), 4
    for component in ("capture", "operator"):  # the "new" images: the same, tagged v2
        node_cluster.node.ctr(
            "images",
            "tag",
            "--force",
            f"localhost/streamgrid-{component}:dev",
            f"localhost/streamgrid-{component}:v2",
        )
    with node_cluster.client() as client:
        streams = [
            start(client, node_cluster.camera.url("/gray"), capture_interval=0.3, top_k=top_k)
            for _ in range(6)
        ]
        wait_until(lambda: not without_running_pod(node_cluster, streams), 180, "six running pods")

        def sampled(stream_id: str, at_least: int) -> bool:
            return bool(details(client, stream_id)["frames_captured"] >= at_least)

        def active(stream_id: str) -> bool:
            return bool(details(client, stream_id)["state"] == "Active")

        for stream_id in streams:
            wait_until(partial(sampled, stream_id, 5), 90, "5 samples")
        revision = json.loads(node_cluster.helm("history", RELEASE, "-o", "json"))[-1]["revision"]

        def roll(*args: str, image: str) -> int:
            """helm upgrade (or rollback) and watch the rollout; the most
            streams without a running pod at once."""
            before = {s: store.list_frames(s) for s in streams}
            counts = {s: details(client, s)["frames_captured"] for s in streams}
            done = threading.Event()
            most = [0]

            def watch() -> None:
                while not done.is_set():
                    most[0] = max(most[0], len(without_running_pod(node_cluster, streams)))
                    time.sleep(0.3)

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                node_cluster.helm(*args, "--wait", "--timeout", "240s")
                wait_until(
                    lambda: (
                        set(images_of(node_cluster, streams).values()) == {image}
                        and len(images_of(node_cluster, streams)) == 6
                        and not without_running_pod(node_cluster, streams)
                    ),
                    300,
                    f"every capture pod on {image}",
                    step=1.0,
                )
            finally:
                done.set()
                watcher.join()
            for s in streams:
                wait_until(partial(active, s), 90, "Active")
                assert details(client, s)["frames_captured"] >= counts[s]  # carried over
                assert_no_kept_frame_lost(before[s], store.list_frames(s), top_k)
            return most[0]

        uids = {s: pod_of(node_cluster, s)["metadata"]["uid"] for s in streams}  # type: ignore[index]
        upgrade = ["upgrade", RELEASE, str(CHART), "--reuse-values"]
        # The operator alone: no capture pod replaced.
        node_cluster.helm(
            *upgrade, "--set", "image.tags.operator=v2", "--wait", "--timeout", "240s"
        )
        time.sleep(10)  # a few reconcile rounds of the new operators
        assert {s: pod_of(node_cluster, s)["metadata"]["uid"] for s in streams} == uids  # type: ignore[index]
        most = roll(
            *upgrade,
            "--set",
            "image.tags.capture=v2",
            "--set",
            "operator.maxUnavailable=2",
            image="localhost/streamgrid-capture:v2",
        )
        show(node_cluster, capsys, "after the capture image upgrade")
        assert 1 <= most <= 2, most
        most = roll("rollback", RELEASE, str(revision), image="localhost/streamgrid-capture:dev")
        assert most <= max(1, 6 * 10 // 100), most  # the default: 10 % of six, at least one
        for stream_id in streams:
            assert client.post(f"/stop/{stream_id}").status_code == 200


def test_a_drained_node_gets_its_capture_pods_back_when_uncordoned_and_no_kept_frame_is_lost(
    node_cluster: NodeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 23 item 5: `kubectl drain` (cordon, then evictions) with three
    streams capturing. Their capture pods are evicted; the operator makes new
    ones, which on the only node stay Pending (Unschedulable) until `kubectl
    uncordon`, then run on the node and carry on: counts kept, no kept frame
    lost. The chart's PodDisruptionBudgets let the drain evict one of the two
    operators and one of the two gateways and refuse the other of each, so
    the drain cannot finish on one node (it gives up at its timeout) and the
    gateway serves throughout. The chart's MinIO is left out of the drain:
    here it keeps its data in an emptyDir (persistence: false), which an
    eviction deletes with every frame in it."""
    store = node_cluster.store()
    top_k = 4
    for component in ("operator", "gateway"):
        assert ready_replicas(node_cluster, component) == 2, component

    def sampled(client: httpx.Client, stream_id: str, at_least: int) -> bool:
        return bool(details(client, stream_id)["frames_captured"] >= at_least)

    with node_cluster.client() as client:
        streams = [
            start(client, node_cluster.camera.url("/gray"), capture_interval=0.3, top_k=top_k)
            for _ in range(3)
        ]
        for stream_id in streams:
            wait_until(partial(sampled, client, stream_id, 8), 90, "8 samples", step=0.5)
        before = {s: store.list_frames(s) for s in streams}
        counts = {s: details(client, s)["frames_captured"] for s in streams}
    first_uids = {}
    for stream_id in streams:
        pod = pod_of(node_cluster, stream_id)
        assert pod is not None and running(pod), pod
        first_uids[stream_id] = pod["metadata"]["uid"]
    show(node_cluster, capsys, "three streams capturing, before the drain")

    def one_running_one_waiting(component: str) -> bool:
        pods = component_pods(node_cluster, component)
        serving = [p for p in pods if running(p) and not p["metadata"].get("deletionTimestamp")]
        return len(pods) == 2 and len(serving) == 1 and sum(map(unschedulable, pods)) == 1

    def evicted_and_waiting(stream_id: str) -> bool:
        pod = pod_of(node_cluster, stream_id)
        return (
            pod is not None
            and pod["metadata"]["uid"] != first_uids[stream_id]
            and unschedulable(pod)
        )

    try:
        drain = subprocess.run(
            [
                str(BIN / "kubectl"), "--kubeconfig", str(node_cluster.kube.kubeconfig),
                "drain", NODE_NAME, "--ignore-daemonsets", "--delete-emptydir-data",
                "--pod-selector", "app.kubernetes.io/component!=minio",
                "--timeout", "60s",
            ],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        node = json.loads(node_cluster.kube.kubectl("get", "node", NODE_NAME, "-o", "json"))
        assert node["spec"].get("unschedulable") is True  # cordoned
        # The budgets held the last operator and the last gateway: no full drain.
        assert drain.returncode != 0, drain.stdout + drain.stderr
        assert "disruption budget" in drain.stderr, drain.stderr
        for component in ("operator", "gateway"):
            wait_until(
                partial(one_running_one_waiting, component),
                60,
                f"one {component} serving, its evicted twin Pending",
                step=0.5,
            )
        for stream_id in streams:
            wait_until(
                partial(evicted_and_waiting, stream_id),
                90,
                f"a new capture pod for {stream_id}, Pending on the cordoned node",
                step=0.5,
            )
        with node_cluster.client() as client:  # a new connection: to the gateway left
            listed = client.get("/list")
            assert listed.status_code == 200, listed.text
            assert set(streams) <= set(listed.json()["active_streams"])
        show(node_cluster, capsys, "drained: the capture pods wait for a node")
    finally:
        node_cluster.kube.kubectl("uncordon", NODE_NAME, check=False)

    def capturing_pod(stream_id: str) -> bool:
        return running(pod_of(node_cluster, stream_id))

    def two_ready(component: str) -> bool:
        return ready_replicas(node_cluster, component) == 2

    for component in ("operator", "gateway"):
        wait_until(partial(two_ready, component), 120, f"two {component} pods ready", step=0.5)
    with node_cluster.client() as client:
        for stream_id in streams:
            wait_until(
                partial(capturing_pod, stream_id), 120, "the capture pod running again", step=0.5
            )
            pod = pod_of(node_cluster, stream_id)
            assert pod is not None and pod["spec"]["nodeName"] == NODE_NAME
            wait_until(
                partial(sampled, client, stream_id, counts[stream_id] + 5),
                90,
                "sampling again, the count carried over",
                step=0.5,
            )
        show(node_cluster, capsys, "uncordoned: capturing again")
        for stream_id in streams:
            response = client.post(f"/stop/{stream_id}")
            assert response.status_code == 200, response.text
            manifest = store.get_manifest(stream_id)
            assert manifest is not None and manifest.final
            assert manifest.frames_captured >= counts[stream_id] + 5
            assert_no_kept_frame_lost(before[stream_id], manifest.kept, top_k)


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
