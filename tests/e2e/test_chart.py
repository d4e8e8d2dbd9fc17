"""The Helm chart: lint, render, and the rendered manifests validated by the
real API server (server-side dry run). test_node.py installs it on a real
node with real pods."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from testbed.cluster import ClusterRuntime
from testbed.kube import ROOT

CHART = str(ROOT / "charts" / "streamgrid")


def render(cluster: ClusterRuntime, *args: str) -> list[dict[str, Any]]:
    text = cluster.kube.helm("template", "sg", CHART, "--namespace", "chart-check", *args)
    return [d for d in yaml.safe_load_all(text) if d]


def deployment(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return next(
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == f"sg-streamgrid-{component}"
    )


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
        "role.rbac.authorization.k8s.io/sg-streamgrid-operator-leader",
        "poddisruptionbudget.policy/sg-streamgrid-operator",
        "poddisruptionbudget.policy/sg-streamgrid-gateway",
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
    # Issue 23: two operators, one leading (a Lease); a rolling update brings
    # the new one up before an old one goes.
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }


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
        "operator.replicas=0",
        "operator.antiAffinity=soft",
        "gateway.antiAffinity=always",
        "operator.podDisruptionBudget.maxUnavailable=-1",
        "gateway.podDisruptionBudget.maxUnavailable=150%",
        "gateway.podDisruptionBudget.maxUnavailable=half",
        "operator.podDisruptionBudget.enabled=maybe",
        "operator.podDisruptionBudget.minAvailable=1",
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
        gateway = deployment(render(cluster, *args), "gateway")
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


def test_the_operator_and_the_gateway_run_two_each_spread_over_nodes(
    cluster: ClusterRuntime,
) -> None:
    """Issue 23: two of each by default, the scheduler asked to put them on
    different nodes (preferred: one node still runs both); required and
    none when asked."""
    docs = render(cluster)
    for component in ("operator", "gateway"):
        found = deployment(docs, component)
        assert found["spec"]["replicas"] == 2, component
        pod = found["spec"]["template"]
        (preferred,) = pod["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        term = preferred["podAffinityTerm"]
        assert preferred["weight"] == 100
        assert term["topologyKey"] == "kubernetes.io/hostname"
        # The term selects this component's pods, and only them.
        assert term["labelSelector"]["matchLabels"] == found["spec"]["selector"]["matchLabels"]
        assert term["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()

    docs = render(
        cluster,
        "--set",
        "operator.antiAffinity=required",
        "--set",
        "gateway.antiAffinity=none",
        "--set",
        "operator.replicas=1",
    )
    operator = deployment(docs, "operator")
    assert operator["spec"]["replicas"] == 1
    (required,) = operator["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert required["topologyKey"] == "kubernetes.io/hostname"
    assert required["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert "affinity" not in deployment(docs, "gateway")["spec"]["template"]["spec"]


def test_disruption_budgets_let_a_drain_take_one_operator_and_one_gateway_at_a_time(
    cluster: ClusterRuntime,
) -> None:
    docs = render(cluster)
    budgets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {"sg-streamgrid-operator", "sg-streamgrid-gateway"}
    for component in ("operator", "gateway"):
        budget = budgets[f"sg-streamgrid-{component}"]
        assert budget["apiVersion"] == "policy/v1"
        assert budget["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in budget["spec"]
        # Exactly the Deployment's pods.
        selector = deployment(docs, component)["spec"]["selector"]
        assert budget["spec"]["selector"] == selector

    docs = render(
        cluster,
        "--set",
        "gateway.podDisruptionBudget.maxUnavailable=50%",
        "--set",
        "operator.podDisruptionBudget.enabled=false",
    )
    budgets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {"sg-streamgrid-gateway"}
    assert budgets["sg-streamgrid-gateway"]["spec"]["maxUnavailable"] == "50%"


def test_non_default_replicas_spread_and_budgets_are_accepted_by_the_api_server(
    cluster: ClusterRuntime,
) -> None:
    cluster.kube.kubectl("create", "namespace", "chart-check", check=False)
    cluster.kube.kubectl(
        "-n", "chart-check", "create", "serviceaccount", "sg-streamgrid-test", check=False
    )
    for values in (
        [
            "operator.replicas=3",
            "operator.antiAffinity=required",
            "operator.podDisruptionBudget.maxUnavailable=0",
            "gateway.antiAffinity=none",
            "gateway.podDisruptionBudget.maxUnavailable=50%",
        ],
        ["operator.podDisruptionBudget.enabled=false", "gateway.replicas=1"],
    ):
        args = [arg for value in values for arg in ("--set", value)]
        text = cluster.kube.helm("template", "sg", CHART, "--namespace", "chart-check", *args)
        out = cluster.kube.kubectl(
            "-n", "chart-check", "apply", "--dry-run=server", "-f", "-", input_text=text
        )
        assert "deployment.apps/sg-streamgrid-operator" in out, out
        assert "poddisruptionbudget.policy/sg-streamgrid-gateway" in out, out


def test_the_operator_may_hold_its_leader_lease_and_no_other(cluster: ClusterRuntime) -> None:
    """The Role for leader election, applied for real and asked of the API
    server's authorizer as the operator's service account: its own Lease
    (named like its Deployment) get and update, any Lease create; another
    Lease, deletion, another namespace: no."""
    namespace = "chart-lease"
    kubectl = cluster.kube.kubectl
    kubectl("create", "namespace", namespace, check=False)
    text = cluster.kube.helm(
        "template", "sg", CHART, "--namespace", namespace, "-s", "templates/rbac.yaml"
    )
    leader = [
        d
        for d in yaml.safe_load_all(text)
        if d and d["metadata"]["name"] == "sg-streamgrid-operator-leader"
    ]
    assert sorted(d["kind"] for d in leader) == ["Role", "RoleBinding"]
    kubectl("-n", namespace, "apply", "-f", "-", input_text=yaml.safe_dump_all(leader))
    account = f"system:serviceaccount:{namespace}:sg-streamgrid-operator"

    def can(verb: str, what: str, where: str = namespace) -> bool:
        out = kubectl("auth", "can-i", verb, what, "-n", where, "--as", account, check=False)
        return out.strip() == "yes"

    lease = "leases.coordination.k8s.io"
    assert can("get", f"{lease}/sg-streamgrid-operator")
    assert can("update", f"{lease}/sg-streamgrid-operator")
    assert can("create", lease)
    assert not can("get", f"{lease}/someone-else")
    assert not can("update", f"{lease}/someone-else")
    assert not can("delete", f"{lease}/sg-streamgrid-operator")
    assert not can("create", lease, where="default")
