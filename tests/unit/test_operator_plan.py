"""The operator's decisions, as a pure function of (stream, pod, now)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamgrid.core.timestamps import format_utc as iso
from streamgrid.operator.podspec import capture_pod, pod_name
from streamgrid.operator.reconcile import plan, set_condition
from streamgrid.operator.settings import OperatorSettings

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
SETTINGS = OperatorSettings(
    store_url="s3://bucket/frames", s3_secret_name="s3", default_ttl_seconds=600
)


def stream(
    state: str = "Running", status: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": "cam1", "namespace": "ns", "uid": "u-1", "generation": 3},
        "spec": {"source": {"url": "rtsp://cam/x"}, "state": state, **spec},
        "status": status or {},
    }


def pod(phase: str, exit_code: int | None = None, deleting: bool = False) -> dict[str, Any]:
    statuses = []
    if exit_code is not None:
        statuses = [{"state": {"terminated": {"exitCode": exit_code}}}]
    meta: dict[str, Any] = {"name": "cam1-capture"}
    if deleting:
        meta["deletionTimestamp"] = iso(NOW)
    return {"metadata": meta, "status": {"phase": phase, "containerStatuses": statuses}}


def condition(status: dict[str, Any], type_: str) -> str:
    return str(next(c["status"] for c in status["conditions"] if c["type"] == type_))


def test_a_new_stream_gets_its_pod() -> None:
    p = plan(stream(), None, SETTINGS, NOW)
    assert p.create_pod is not None and p.create_pod["metadata"]["name"] == "cam1-capture"
    assert p.status["state"] == "Pending"
    assert p.status["podName"] == "cam1-capture"
    assert p.status["observedGeneration"] == 3
    assert p.status["store"]["url"] == "s3://bucket/frames/ns/cam1/"
    assert condition(p.status, "Ready") == "False"


def test_a_running_pod_reflects_what_capture_reports() -> None:
    p = plan(
        stream(status={"captureState": "Active", "state": "Pending"}), pod("Running"), SETTINGS, NOW
    )
    assert not p.create_pod and not p.delete_pod
    assert p.status["state"] == "Active"
    assert condition(p.status, "Ready") == "True"
    p = plan(
        stream(status={"captureState": "Reconnecting", "captureReason": "refused"}),
        pod("Running"),
        SETTINGS,
        NOW,
    )
    assert (p.status["state"], p.status["reason"]) == ("Reconnecting", "refused")


def test_stopping_deletes_the_pod_then_reports_stopped() -> None:
    p = plan(stream("Stopped", {"state": "Active"}), pod("Running"), SETTINGS, NOW)
    assert p.delete_pod and p.status["state"] == "Stopping"
    p = plan(stream("Stopped", {"state": "Stopping"}), pod("Running", deleting=True), SETTINGS, NOW)
    assert not p.delete_pod and "state" not in p.status  # still Stopping: nothing to write
    p = plan(stream("Stopped", {"state": "Stopping"}), None, SETTINGS, NOW)
    assert p.status["state"] == "Stopped" and p.status["stoppedAt"] == iso(NOW)
    assert condition(p.status, "Stopped") == "True"
    assert not p.delete_stream


@pytest.mark.parametrize(
    ("ttl", "age", "expired"),
    [(None, 599, False), (None, 600, True), (30, 31, True), (30, 10, False)],
)
def test_stopped_streams_expire_after_their_ttl(ttl: int | None, age: int, expired: bool) -> None:
    extra = {} if ttl is None else {"ttlSecondsAfterStopped": ttl}
    status = {"state": "Stopped", "stoppedAt": iso(NOW - timedelta(seconds=age))}
    assert plan(stream("Stopped", status, **extra), None, SETTINGS, NOW).delete_stream is expired


def test_a_refused_camera_fails_the_stream_without_a_restart() -> None:
    p = plan(
        stream(status={"state": "Active", "captureReason": "401 Unauthorized"}),
        pod("Failed", exit_code=3),
        SETTINGS,
        NOW,
    )
    assert p.status["state"] == "Failed" and "401" in p.status["reason"]
    assert p.delete_pod and p.create_pod is None
    again = plan(stream(status={**p.status, "state": "Failed"}), None, SETTINGS, NOW)
    assert again.create_pod is None and again.status.get("state", "Failed") == "Failed"
    edited = stream(status={**p.status, "state": "Failed"})
    edited["metadata"]["generation"] = 4  # the user fixed the spec
    retry = plan(edited, None, SETTINGS, NOW)
    assert retry.create_pod is not None and retry.status["state"] == "Pending"


def test_a_crashed_pod_is_replaced_up_to_the_limit() -> None:
    p = plan(stream(status={"state": "Active"}), pod("Failed", exit_code=1), SETTINGS, NOW)
    assert p.delete_pod and p.status["restarts"] == 1 and p.status["state"] == "Reconnecting"
    gone = plan(stream(status={"state": "Reconnecting", "restarts": 1}), None, SETTINGS, NOW)
    assert gone.create_pod is not None
    limit = SETTINGS.pod_restart_limit
    over = plan(
        stream(status={"state": "Reconnecting", "restarts": limit}),
        pod("Failed", exit_code=137),
        SETTINGS,
        NOW,
    )
    assert over.status["state"] == "Failed"


def test_nothing_changes_when_nothing_changed() -> None:
    first = plan(stream(status={"captureState": "Active"}), pod("Running"), SETTINGS, NOW)
    settled = {"captureState": "Active", **first.status}
    later = plan(stream(status=settled), pod("Running"), SETTINGS, NOW + timedelta(minutes=5))
    assert later.status == {} and not later.create_pod and not later.delete_pod


def test_condition_times_move_only_on_a_flip() -> None:
    first = set_condition([], "Ready", True, "Active", "", 1, NOW)
    same = set_condition(first, "Ready", True, "Active", "", 2, NOW + timedelta(hours=1))
    assert same[0]["lastTransitionTime"] == iso(NOW)
    flipped = set_condition(same, "Ready", False, "Reconnecting", "", 2, NOW + timedelta(hours=2))
    assert flipped[0]["lastTransitionTime"] == iso(NOW + timedelta(hours=2))


def test_the_capture_pod_is_restricted_owned_and_secret_fed() -> None:
    body = capture_pod(
        stream(source={"url": "rtsp://cam/x", "credentialsSecretRef": {"name": "cam1-creds"}}),
        SETTINGS,
    )
    assert body["metadata"]["name"] == pod_name("cam1")
    owner = body["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("VideoStream", "u-1", True)
    spec = body["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = spec["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    env = {e["name"]: e for e in container["env"]}
    assert env["STREAMGRID_SOURCE_URL"]["value"] == "rtsp://cam/x"
    assert env["STREAMGRID_STORE_URL"]["value"] == "s3://bucket/frames/ns"
    password = env["STREAMGRID_SOURCE_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": "cam1-creds", "key": "password", "optional": True}
    assert env["STREAMGRID_S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3"
    assert all("value" not in e or "@" not in e["value"] for e in container["env"])


def test_a_stream_may_turn_certificate_checks_off_and_only_it() -> None:
    def verify(source: dict[str, object]) -> str:
        env = {
            e["name"]: e
            for e in capture_pod(stream(source=source), SETTINGS)["spec"]["containers"][0]["env"]
        }
        return str(env["STREAMGRID_TLS_VERIFY"]["value"])

    assert verify({"url": "rtsps://cam/x"}) == "true"
    assert verify({"url": "rtsps://cam/x", "tlsVerify": False}) == "false"
