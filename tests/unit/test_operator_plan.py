"""The operator's decisions, as a pure function of (stream, pod, now)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamgrid.core.crd import SPEC_HASH_ANNOTATION
from streamgrid.core.timestamps import format_utc as iso
from streamgrid.operator.podspec import capture_pod, pod_name, spec_hash
from streamgrid.operator.reconcile import RETRY_ANNOTATION, backoff_seconds, plan, set_condition
from streamgrid.operator.settings import OperatorSettings

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
# No jitter here: the backoff's exponential law, exactly (its jitter: below).
SETTINGS = OperatorSettings(
    store_url="s3://bucket/frames",
    s3_secret_name="s3",
    default_ttl_seconds=600,
    pod_backoff_jitter=0,
)


def stream(
    state: str = "Running", status: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": "cam1", "namespace": "ns", "uid": "u-1", "generation": 3},
        "spec": {"source": {"url": "rtsp://cam/x"}, "state": state, **spec},
        "status": status or {},
    }


def pod(
    phase: str,
    exit_code: int | None = None,
    deleting: bool = False,
    of: dict[str, Any] | None = None,
    message: str = "",
) -> dict[str, Any]:
    """The capture pod, made from ``of``'s spec (default: stream()'s)."""
    statuses = []
    if exit_code is not None:
        statuses = [{"state": {"terminated": {"exitCode": exit_code, "message": message}}}]
    body = capture_pod(of or stream(), SETTINGS)
    if deleting:
        body["metadata"]["deletionTimestamp"] = iso(NOW)
    body["status"] = {"phase": phase, "containerStatuses": statuses}
    return body


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
        stream(status={"state": "Reconnecting", "restarts": limit, "consecutiveExits": limit}),
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


def events(p: Any) -> dict[str, str]:
    return {reason: message for _type, reason, message in p.events}


def test_a_changed_spec_replaces_the_pod_and_only_then_is_observed() -> None:
    """Issue 13 item 1: an edit used to leave the old pod running while
    observedGeneration claimed it applied."""
    old = stream(status={"state": "Active", "captureState": "Active", "podName": "cam1-capture"})
    edited = stream(status={**old["status"], "observedGeneration": 3}, captureInterval=0.2, topK=4)
    edited["metadata"]["generation"] = 4
    p = plan(edited, pod("Running", of=old), SETTINGS, NOW)
    assert p.delete_pod and p.create_pod is None
    assert "observedGeneration" not in p.status  # still 3: the old pod runs
    assert p.status["state"] == "Reconnecting"
    assert "captureInterval 1.0 -> 0.2" in events(p)["PodReplaced"]
    assert "topK 9 -> 4" in events(p)["PodReplaced"]
    assert condition(p.status, "SpecApplied") == "False"

    gone = {**edited["status"], **p.status}
    p2 = plan({**edited, "status": gone}, None, SETTINGS, NOW)
    assert p2.create_pod is not None and p2.status["observedGeneration"] == 4
    env = {e["name"]: e.get("value") for e in p2.create_pod["spec"]["containers"][0]["env"]}
    assert (env["STREAMGRID_CAPTURE_INTERVAL"], env["STREAMGRID_TOP_K"]) == ("0.2", "4")
    assert "PodLost" not in events(p2) and "restarts" not in p2.status  # ours, not lost
    running = plan(edited, pod("Running", of=edited), SETTINGS, NOW)
    assert not running.delete_pod and running.status["observedGeneration"] == 4


def test_state_and_ttl_are_not_the_pods_business() -> None:
    changed = stream(status={"state": "Active", "captureState": "Active"}, ttlSecondsAfterStopped=5)
    p = plan(changed, pod("Running"), SETTINGS, NOW)
    assert not p.delete_pod and "PodReplaced" not in events(p)


@pytest.mark.parametrize(
    ("exits", "delay"), [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (50, 300)]
)
def test_recreation_backs_off_exponentially_up_to_a_cap(exits: int, delay: float) -> None:
    assert backoff_seconds(exits, SETTINGS) == delay


def test_a_crashing_pod_is_recreated_after_its_backoff_only() -> None:
    """Issue 13 item 4: 21 recreations in 15 s; now each waits longer."""
    p = plan(
        stream(status={"state": "Reconnecting", "consecutiveExits": 3, "restarts": 3}),
        pod("Failed", exit_code=1),
        SETTINGS,
        NOW,
    )
    assert p.delete_pod and p.status["consecutiveExits"] == 4 and p.status["restarts"] == 4
    assert p.status["nextAttemptAt"] == iso(NOW + timedelta(seconds=8))
    after = {"state": "Reconnecting", **p.status, "podName": None}
    early = plan(stream(status=after), None, SETTINGS, NOW + timedelta(seconds=7))
    assert early.create_pod is None and early.status.get("state", "Reconnecting") == "Reconnecting"
    edited = stream(status={**after, "observedGeneration": 3})
    edited["metadata"]["generation"] = 4  # an edit may be the fix: no waiting
    assert plan(edited, None, SETTINGS, NOW + timedelta(seconds=1)).create_pod is not None
    due = plan(stream(status=after), None, SETTINGS, NOW + timedelta(seconds=8))
    assert due.create_pod is not None and "PodLost" not in events(due)
    active = plan(stream(status={**after, "captureState": "Active"}), pod("Running"), SETTINGS, NOW)
    assert active.status["consecutiveExits"] is None  # a healthy run ends the crash loop


def test_bad_settings_fail_at_once_naming_the_cause() -> None:
    """Exit 2 (the worker refused its settings) fails at once, with its log's last word."""
    line = '{"event":"worker.bad_settings","errors":"stream_id: String should match pattern"}'
    p = plan(stream(status={"state": "Pending"}), pod("Failed", 2, message=line), SETTINGS, NOW)
    assert p.status["state"] == "Failed" and p.delete_pod
    assert "worker.bad_settings: stream_id: String should match pattern" in p.status["reason"]
    assert "settings" in events(p)["Failed"]


def test_a_missing_credentials_secret_says_so_and_waits_for_it() -> None:
    """Issue 13 item 7: a missing Secret read as a camera's 401."""
    source = {"url": "rtsp://cam/x", "credentialsSecretRef": {"name": "cam1-creds"}}
    s = stream(source=source)
    p = plan(s, None, SETTINGS, NOW, credentials_version=None)
    assert p.create_pod is None and p.status["state"] == "Pending"
    assert p.status["reason"] == "credentials Secret cam1-creds not found in namespace ns"
    assert events(p)["SecretMissing"] == p.status["reason"]
    assert condition(p.status, "CredentialsFound") == "False"
    again = plan(stream(status=p.status, source=source), None, SETTINGS, NOW)
    assert "SecretMissing" not in events(again)  # said once
    found = plan(stream(status=p.status, source=source), None, SETTINGS, NOW, "42")
    assert found.create_pod is not None and condition(found.status, "CredentialsFound") == "True"
    assert found.status["reason"] == ""


def test_a_failed_stream_is_retried_when_its_secret_or_the_annotation_changes() -> None:
    source = {"url": "rtsp://cam/x", "credentialsSecretRef": {"name": "cam1-creds"}}
    failing = stream(status={"state": "Active", "captureReason": "401"}, source=source)
    p = plan(failing, pod("Failed", 3, of=failing), SETTINGS, NOW, "7")
    assert p.status["state"] == "Failed"
    failed = {**failing["status"], **p.status}
    same = plan(stream(status=failed, source=source), None, SETTINGS, NOW, "7")
    assert same.create_pod is None and "state" not in same.status
    fixed = plan(stream(status=failed, source=source), None, SETTINGS, NOW, "8")
    assert fixed.create_pod is not None
    assert "credentials Secret changed" in events(fixed)["Retrying"]
    assert fixed.status["failedInputs"] is None and fixed.status["restarts"] == 0
    annotated = stream(status=failed, source=source)
    annotated["metadata"]["annotations"] = {RETRY_ANNOTATION: "1"}
    retried = plan(annotated, None, SETTINGS, NOW, "7")
    assert retried.create_pod is not None
    assert RETRY_ANNOTATION in events(retried)["Retrying"]


def test_a_lost_pod_counts_as_a_restart_and_says_so() -> None:
    s = stream(status={"state": "Active", "podName": "cam1-capture", "restarts": 2})
    p = plan(s, None, SETTINGS, NOW)
    assert p.create_pod is not None and p.status["restarts"] == 3
    assert "PodLost" in events(p) and "PodCreated" in events(p)
    assert p.status["state"] == "Reconnecting"


def test_running_again_clears_stopped_at_and_events_say_what_happens() -> None:
    stopped = {"state": "Stopped", "stoppedAt": iso(NOW - timedelta(minutes=1))}
    p = plan(stream(status=stopped), None, SETTINGS, NOW)
    assert p.create_pod is not None and p.status["stoppedAt"] is None
    assert events(p)["PodCreated"] == "capture pod cam1-capture created"
    reconnecting = plan(
        stream(status={"state": "Active", "captureState": "Reconnecting", "captureReason": "EOF"}),
        pod("Running"),
        SETTINGS,
        NOW,
    )
    assert events(reconnecting)["Reconnecting"] == "EOF"


def test_the_pod_carries_the_hash_of_the_capture_spec_only() -> None:
    body = capture_pod(stream(), SETTINGS)
    assert body["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == spec_hash(stream()["spec"])
    assert spec_hash(stream("Stopped", ttlSecondsAfterStopped=1)["spec"]) == spec_hash(
        stream()["spec"]
    )
    assert spec_hash(stream(topK=4)["spec"]) != spec_hash(stream()["spec"])


def test_a_stream_is_looked_at_again_when_its_backoff_or_ttl_ends() -> None:
    from streamgrid.operator.controller import SECRET_RECHECK_SECONDS, wake_in

    assert wake_in(stream(), SETTINGS, NOW) is None  # nothing due: the resync will do
    backing_off = stream(status={"nextAttemptAt": iso(NOW + timedelta(seconds=4))})
    assert wake_in(backing_off, SETTINGS, NOW) == 4
    stopped = stream(
        "Stopped",
        ttlSecondsAfterStopped=60,
        status={"state": "Stopped", "stoppedAt": iso(NOW - timedelta(seconds=20))},
    )
    assert wake_in(stopped, SETTINGS, NOW) == 40
    overdue = stream(status={"nextAttemptAt": iso(NOW - timedelta(seconds=4))})
    assert wake_in(overdue, SETTINGS, NOW) == 1.0  # not at once, again and again
    waiting = stream(
        status={"state": "Pending", "reason": "credentials Secret cam-creds not found in cams"}
    )
    assert wake_in(waiting, SETTINGS, NOW) == SECRET_RECHECK_SECONDS


def within_crd_limits(p: Any) -> None:
    """The CRD's maxLength: reason 1024; a condition's reason 256, message 1024."""
    assert len(p.status.get("reason", "")) <= 1024
    for c in p.status.get("conditions", []):
        assert len(c["reason"]) <= 256 and len(c["message"]) <= 1024
    assert all(len(message) <= 1024 for _type, _reason, message in p.events)


def test_long_urls_and_causes_never_overflow_the_status() -> None:
    """A reason over the CRD's maxLength made the API server refuse the status
    patch after apply() had deleted the pod: PodLost, recreated, forever."""
    long_url = "rtsp://cam/" + "x" * 2000  # source.url may be 2048 characters
    old = stream(status={"state": "Active", "captureState": "Active", "podName": "cam1-capture"})
    old["spec"]["source"]["url"] = long_url
    edited = stream(status={**old["status"], "observedGeneration": 3})
    edited["spec"]["source"]["url"] = long_url.replace("x", "y")
    edited["metadata"]["generation"] = 4
    replaced = plan(edited, pod("Running", of=old), SETTINGS, NOW)
    assert replaced.delete_pod and replaced.status["reason"].startswith("applying the changed spec")
    within_crd_limits(replaced)
    cause = "z" * 1024  # captureReason may be 1024 characters itself
    failed = plan(
        stream(status={"state": "Active", "captureReason": cause}),
        pod("Failed", exit_code=3),
        SETTINGS,
        NOW,
    )
    assert failed.status["state"] == "Failed"
    assert failed.status["reason"].startswith("the camera refused the stream: zzz")
    within_crd_limits(failed)


def test_a_pod_of_the_previous_operator_is_kept_until_the_spec_changes() -> None:
    """Pods made before the spec-hash annotation existed: an upgrade must not
    replace them all at once, only once their stream's spec changes."""
    legacy = pod("Running")
    del legacy["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    status = {"state": "Active", "captureState": "Active", "podName": "cam1-capture"}
    same = stream(status={**status, "observedGeneration": 3})
    p = plan(same, legacy, SETTINGS, NOW)
    assert not p.delete_pod and p.create_pod is None
    assert condition(p.status, "SpecApplied") == "True"
    edited = stream(status={**status, "observedGeneration": 3}, topK=4)
    edited["metadata"]["generation"] = 4
    p = plan(edited, legacy, SETTINGS, NOW)
    assert p.delete_pod and "PodReplaced" in events(p)


def test_capture_pods_invite_a_prometheus_scrape_of_their_health_port() -> None:
    from streamgrid.operator.podspec import HEALTH_PORT

    annotations = capture_pod(stream(), SETTINGS)["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(HEALTH_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


# -- kstatus, rollouts, pausing (issue 23) ----------------------------------------
def conditions_by_type(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_kstatus_conditions_say_reconciling_stalled_and_ready() -> None:
    """Flux, kpt and Argo CD's kstatus checks read Reconciling, Stalled and
    Ready, each for its observedGeneration."""
    creating = conditions_by_type(plan(stream(), None, SETTINGS, NOW).status)
    assert creating["Reconciling"]["status"] == "True"
    assert creating["Reconciling"]["reason"] == "CreatingPod"
    assert creating["Stalled"]["status"] == "False"
    assert creating["Ready"]["status"] == "False"
    active = {"captureState": "Active", "state": "Active", "observedGeneration": 3}
    running = plan(stream(status=active), pod("Running"), SETTINGS, NOW)
    found = conditions_by_type({**active, **running.status})
    assert found["Ready"]["status"] == "True" and found["Reconciling"]["status"] == "False"
    assert {c["observedGeneration"] for c in found.values()} == {3}
    failed = plan(
        stream(status={"state": "Reconnecting", "podName": "cam1-capture"}),
        pod("Failed", exit_code=3, message="401 Unauthorized"),
        SETTINGS,
        NOW,
    )
    stalled = conditions_by_type(failed.status)
    assert failed.status["state"] == "Failed"
    assert stalled["Stalled"]["status"] == "True" and "refused" in stalled["Stalled"]["message"]
    assert stalled["Reconciling"]["status"] == "False"


def test_ready_needs_the_current_generations_spec() -> None:
    """Active, but the pod runs generation 2's spec while the stream is at 3:
    not Ready, and Reconciling until the new pod runs."""
    edited = stream(topK=4, status={"captureState": "Active", "state": "Active"})
    older = pod("Running", of=stream())  # made from the spec before the edit
    p = plan(edited, older, SETTINGS, NOW)
    found = conditions_by_type(p.status)
    assert p.delete_pod and found["Ready"]["status"] == "False"
    assert found["Reconciling"]["status"] == "True"
    assert found["Reconciling"]["reason"] == "ReplacingPod"


def test_a_pod_on_an_older_template_is_rolled_only_when_the_budget_allows() -> None:
    active = {"captureState": "Active", "state": "Active", "observedGeneration": 3}
    upgraded = SETTINGS.model_copy(update={"capture_image": "localhost/streamgrid-capture:v2"})
    old = pod("Running")  # made with the old image
    kept = plan(stream(status=active), old, upgraded, NOW, may_roll=False)
    assert not kept.delete_pod and not kept.rolled
    rolled = plan(stream(status=active), old, upgraded, NOW, may_roll=True)
    assert rolled.delete_pod and rolled.rolled
    assert "PodReplaced" in events(rolled) and "PodLost" not in events(rolled)
    assert "streamgrid-capture:v2" in rolled.status["reason"]
    # Same settings: nothing to roll, whatever the budget.
    same = plan(stream(status=active), old, SETTINGS, NOW, may_roll=True)
    assert not same.delete_pod and not same.rolled


def test_a_paused_stream_is_left_as_it_is() -> None:
    paused = stream(status={"state": "Active", "captureState": "Active"})
    paused["metadata"]["annotations"] = {"streamgrid.io/paused": "true"}
    edited = {**paused, "spec": {**paused["spec"], "topK": 4}}  # would replace the pod
    p = plan(edited, pod("Running"), SETTINGS, NOW)
    assert not p.delete_pod and not p.create_pod and not p.events
    assert conditions_by_type(p.status)["ReconciliationPaused"]["status"] == "True"
    again = plan(
        {**edited, "status": {**edited["status"], **p.status}}, pod("Running"), SETTINGS, NOW
    )
    assert again.status == {}  # said once
    resumed = {**edited, "metadata": {**edited["metadata"], "annotations": {}}}
    r = plan({**resumed, "status": {**edited["status"], **p.status}}, pod("Running"), SETTINGS, NOW)
    assert r.delete_pod  # the edit is applied now
    assert conditions_by_type(r.status)["ReconciliationPaused"]["status"] == "False"
