"""The Helm chart: lint, render, and the rendered manifests validated by the
real API server (server-side dry run). test_node.py installs it on a real
node with real pods."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from ..support.cluster import ClusterRuntime
from ..support.kube import ROOT

CHART = str(ROOT / "charts" / "streamgrid")


def render(cluster: ClusterRuntime, *args: str) -> list[dict[str, Any]]:
    text = cluster.kube.helm("template", "sg", CHART, "--namespace", "chart-check", *args)
    return [d for d in yaml.safe_load_all(text) if d]


def test_helm_lint(cluster: ClusterRuntime) -> None:
    out = cluster.kube.helm("lint", "--strict", CHART)
    assert "0 chart(s) failed" in out


def test_rendered_chart_is_accepted_by_the_api_server(cluster: ClusterRuntime) -> None:
    cluster.kube.kubectl("create", "namespace", "chart-check", check=False)
    # A dry run creates nothing, but admission checks that a pod's service
    # account exists: the one the helm test hook would have made first.
    cluster.kube.kubectl(
        "-n", "chart-check", "create", "serviceaccount", "sg-streamgrid-test", check=False
    )
    text = cluster.kube.helm("template", "sg", CHART, "--namespace", "chart-check")
    out = cluster.kube.kubectl(
        "-n", "chart-check", "apply", "--dry-run=server", "-f", "-", input_text=text
    )
    for kind in (
        "deployment.apps/sg-streamgrid-gateway",
        "deployment.apps/sg-streamgrid-operator",
        "service/sg-streamgrid-gateway",
        "clusterrole.rbac.authorization.k8s.io/sg-streamgrid-kopf",
        "role.rbac.authorization.k8s.io/streamgrid-capture",
    ):
        assert kind in out, out


def test_every_workload_runs_restricted(cluster: ClusterRuntime) -> None:
    docs = render(cluster)
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    assert len(pods) == 3  # gateway, operator, minio
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    labels = [d["metadata"]["labels"] for d in docs]
    assert all(label["app.kubernetes.io/name"] == "streamgrid" for label in labels)
    operator = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator")
    )
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}


def test_external_s3_needs_credentials(cluster: ClusterRuntime) -> None:
    with pytest.raises(RuntimeError, match=r"s3\.accessKeyId"):
        render(cluster, "--set", "minio.enabled=false", "--set", "s3.endpoint=http://s3:9000")
    docs = render(
        cluster,
        "--set",
        "minio.enabled=false",
        "--set",
        "s3.existingSecret=mine",
        "--set",
        "s3.endpoint=http://s3:9000",
    )
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert not [d for d in docs if "minio" in d["metadata"]["name"]]


@pytest.mark.parametrize(
    "bad",
    [
        "gateway.replicas=0",
        "image.pullPolicy=Sometimes",
        "s3.bucket=Bad_Bucket",
        "gateway.service.nodePort=80",
        "gateway.allowedOrigins={ftp://files.example.com}",
        "gateway.allowedHosts={bad host}",
    ],
)
def test_the_values_schema_refuses_bad_values(cluster: ClusterRuntime, bad: str) -> None:
    with pytest.raises(RuntimeError, match=r"values don't meet the specifications|schema"):
        render(cluster, "--set", bad)


def test_authentication_is_on_by_default_and_off_only_when_asked(cluster: ClusterRuntime) -> None:
    def gateway_env(*args: str) -> dict[str, Any]:
        docs = render(cluster, *args)
        deployments = [d for d in docs if d["kind"] == "Deployment"]
        gateway = next(d for d in deployments if d["metadata"]["name"] == "sg-streamgrid-gateway")
        env = gateway["spec"]["template"]["spec"]["containers"][0]["env"]
        return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}

    env = gateway_env()
    assert env["STREAMGRID_AUTH_KUBERNETES"] == "true"
    assert env["STREAMGRID_INSECURE"] == "false"
    bindings = [d for d in render(cluster) if d["kind"] == "ClusterRoleBinding"]
    delegator = [b for b in bindings if b["roleRef"]["name"] == "system:auth-delegator"]
    assert [s["name"] for s in delegator[0]["subjects"]] == ["sg-streamgrid-gateway"]

    env = gateway_env("--set", "gateway.auth.existingSecret=api-token")
    assert env["STREAMGRID_API_TOKEN"] == {"secretKeyRef": {"name": "api-token", "key": "token"}}
    env = gateway_env(
        "--set", "gateway.auth.kubernetes=false", "--set", "gateway.auth.allowUnauthenticated=true"
    )
    assert env["STREAMGRID_AUTH_KUBERNETES"] == "false"
    assert env["STREAMGRID_INSECURE"] == "true"


def test_the_gateway_answers_to_its_service_names_and_the_allowed_ones(
    cluster: ClusterRuntime,
) -> None:
    def gateway_env(*args: str) -> dict[str, Any]:
        docs = render(cluster, *args)
        gateway = next(d for d in docs if d["metadata"]["name"] == "sg-streamgrid-gateway")
        env = gateway["spec"]["template"]["spec"]["containers"][0]["env"]
        return {e["name"]: e.get("value") for e in env}

    service = "sg-streamgrid-gateway"
    names = [service, f"{service}.chart-check", f"{service}.chart-check.svc"]
    env = gateway_env()
    assert env["STREAMGRID_ALLOWED_HOSTS"].split(",") == [*names, f"{names[-1]}.cluster.local"]
    assert env["STREAMGRID_ALLOWED_ORIGINS"] == ""
    env = gateway_env(
        "--set",
        "gateway.allowedHosts={cams.example.com,*.cams.example.org}",
        "--set",
        "gateway.allowedOrigins={https://cams.example.com}",
        "--set",
        "gateway.clusterDomain=corp.internal",
    )
    assert env["STREAMGRID_ALLOWED_HOSTS"].split(",") == [
        *names,
        f"{names[-1]}.corp.internal",
        "cams.example.com",
        "*.cams.example.org",
    ]
    assert env["STREAMGRID_ALLOWED_ORIGINS"] == "https://cams.example.com"
