"""The chart's alerts (metrics.prometheusRule): the rendered PrometheusRule's
rules loaded by Prometheus' own rule checker, promtool (Debian's `prometheus`
package): `promtool check rules`, and `promtool test rules` with the unit
tests in prometheus/alerts.test.yaml (series in, alerts out)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.kube import BIN, ROOT

CHART = str(ROOT / "charts" / "streamgrid")
NAMESPACE = "chart-check"  # the unit tests' operator series are in it
UNIT_TESTS = Path(__file__).parent / "prometheus" / "alerts.test.yaml"
ENABLED = ("--set", "metrics.prometheusRule.enabled=true")
# What annotations may hold: the alert's labels and its value.
TEMPLATE_ACTION = re.compile(r"\{\{\s*(?:\$labels\.(\w+)|(\$value))\s*\}\}")


def helm_template(*args: str) -> list[dict[str, Any]]:
    helm = BIN / "helm"
    if not helm.exists():
        pytest.fail(f"missing {helm}: run tools/kube/build.sh (make test does)")
    result = subprocess.run(
        [str(helm), "template", "sg", CHART, "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm template: {result.stderr.strip()}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def prometheus_rule(*args: str) -> dict[str, Any]:
    rules = [d for d in helm_template(*ENABLED, *args) if d["kind"] == "PrometheusRule"]
    assert len(rules) == 1, rules
    return rules[0]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool not found: apt-get install prometheus "
            "(scripts/install-system-deps.sh installs it)"
        )
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=120)


def write_rules(rule: dict[str, Any], where: Path) -> Path:
    """The PrometheusRule's spec is a Prometheus rule file's content."""
    path = where / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def alerting_rules(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def expand(template: str, labels: dict[str, str], value: float | None) -> str:
    """An annotation as Prometheus writes it for an alert with these labels.
    A label the alert lacks is a KeyError: the annotation would say <no value>."""

    def one(match: re.Match[str]) -> str:
        if match.group(1):
            return labels[match.group(1)]
        assert value is not None, f"{template!r} shows $value: give the case an exp_value"
        return format(value, "g")

    expanded = TEMPLATE_ACTION.sub(one, template)
    assert "{{" not in expanded, f"a template action besides $labels and $value: {template!r}"
    return expanded


def with_annotations(
    unit_tests: dict[str, Any], rules: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Each expected alert gets its rule's annotations, expanded for it."""
    for group in unit_tests["tests"]:
        for case in group["alert_rule_test"]:
            rule = rules[case["alertname"]]
            for alert in case["exp_alerts"]:
                value = alert.pop("exp_value", None)
                labels = {str(k): str(v) for k, v in alert["exp_labels"].items()}
                alert["exp_annotations"] = {
                    name: expand(text, labels, value)
                    for name, text in rule.get("annotations", {}).items()
                }
    return unit_tests


def test_the_rule_is_off_by_default_and_carries_the_labels_asked_for() -> None:
    assert not [d for d in helm_template() if d["kind"] == "PrometheusRule"]
    rule = prometheus_rule(
        "--set",
        "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        "--set",
        "metrics.prometheusRule.alertLabels.team=video",
    )
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/name"] == "streamgrid"
    for name, alert in alerting_rules(rule).items():
        assert alert["labels"]["team"] == "video", name
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        # The Prometheus Operator's CRD takes strings only.
        assert all(isinstance(v, str) for v in alert["labels"].values()), name
        assert all(isinstance(v, str) for v in alert["annotations"].values()), name
        assert set(alert["annotations"]) == {"summary", "description"}, name


def test_promtool_checks_the_rendered_rules(tmp_path: Path) -> None:
    rules = write_rules(prometheus_rule(), tmp_path)
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout, checked.stdout


def test_each_alert_fires_when_it_should_and_not_otherwise(tmp_path: Path) -> None:
    """promtool's unit tests: for every alert, series that fire it (at the
    time its `for` says) and series that do not."""
    rule = prometheus_rule()
    rules = alerting_rules(rule)
    unit_tests = yaml.safe_load(UNIT_TESTS.read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in unit_tests["tests"]:
        for case in group["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == quiet == set(rules), (firing, quiet, set(rules))

    write_rules(rule, tmp_path)
    test_file = tmp_path / "alerts.test.yaml"
    test_file.write_text(yaml.safe_dump(with_annotations(unit_tests, rules), sort_keys=False))
    tested = promtool("test", "rules", str(test_file))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout, tested.stdout


def test_a_broken_expectation_fails_promtool(tmp_path: Path) -> None:
    """The unit tests can fail: a stream that is Active all along expected
    to alert makes promtool say FAILED."""
    rule = prometheus_rule()
    write_rules(rule, tmp_path)
    unit_tests = yaml.safe_load(UNIT_TESTS.read_text())
    first = unit_tests["tests"][0]
    first["alert_rule_test"][-1]["exp_alerts"].append(
        {"exp_labels": {"severity": "warning", "namespace": "cams", "stream": "b"}}
    )
    test_file = tmp_path / "alerts.test.yaml"
    test_file.write_text(
        yaml.safe_dump(with_annotations(unit_tests, alerting_rules(rule)), sort_keys=False)
    )
    tested = promtool("test", "rules", str(test_file))
    assert tested.returncode != 0
    assert "FAILED" in tested.stdout + tested.stderr


def test_the_thresholds_come_from_the_values(tmp_path: Path) -> None:
    rule = prometheus_rule(
        "--set",
        "metrics.prometheusRule.notActiveFor=10m",
        "--set",
        "metrics.prometheusRule.podRecreationsPerHour=6",
    )
    rules = alerting_rules(rule)
    assert rules["StreamgridStreamNotActive"]["for"] == "10m"
    assert "for 10m" in rules["StreamgridStreamNotActive"]["annotations"]["summary"]
    assert rules["StreamgridCapturePodsRecreated"]["expr"].strip().endswith("> 6")
    assert "more than 6" in rules["StreamgridCapturePodsRecreated"]["annotations"]["summary"]
    checked = promtool("check", "rules", str(write_rules(rule, tmp_path)))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    "bad",
    [
        "metrics.prometheusRule.notActiveFor=5 minutes",
        "metrics.prometheusRule.notActiveFor=0m",
        "metrics.prometheusRule.podRecreationsPerHour=-1",
        "metrics.prometheusRule.podRecreationsPerHour=many",
        "metrics.prometheusRule.severity=page",
    ],
)
def test_the_values_schema_refuses_bad_alert_values(bad: str) -> None:
    with pytest.raises(RuntimeError, match=r"values don't meet the specifications"):
        helm_template(*ENABLED, "--set", bad)


def test_the_operator_is_scraped_with_the_streams_own_namespace_label() -> None:
    """The alerts read the operator's metrics: with serviceMonitor on, a
    PodMonitor scrapes its metrics port, honouring the `namespace` label of
    its per-stream series (else Prometheus renames it exported_namespace)."""
    docs = helm_template("--set", "metrics.serviceMonitor.enabled=true")
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodMonitor"}
    operator_name = "sg-streamgrid-operator"
    operator = monitors[operator_name]
    assert operator["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "streamgrid",
        "app.kubernetes.io/instance": "sg",
        "app.kubernetes.io/component": "operator",
    }
    (endpoint,) = operator["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["honorLabels"]) == (
        "metrics",
        "/metrics",
        True,
    )
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == operator_name
    )
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"name": "metrics", "containerPort": 9090} in ports
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert operator["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_docs_show_each_rules_promql_and_for() -> None:
    """docs/metrics.md's Alerts table is the rendered rules, word for word
    (the release's namespace as RELEASE_NS)."""
    rows = {}
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`Streamgrid"):
            rows[cells[0].strip("`")] = (cells[1].strip("`"), cells[2].split()[0].strip("`"))
    rules = alerting_rules(prometheus_rule())
    assert set(rows) == set(rules)
    for name, rule in rules.items():
        expr = " ".join(rule["expr"].split()).replace(NAMESPACE, "RELEASE_NS")
        assert rows[name] == (expr, rule.get("for", "none")), name
