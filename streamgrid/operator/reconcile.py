"""What the operator does about one VideoStream, decided by a pure function.

``plan(stream, pod, settings, now)`` looks at the resource and its capture Pod
and returns a Plan: create the pod, delete it, delete the stream (TTL), and
the status to write. ``apply`` carries it out; ``reconcile`` does both. Every
handler calls ``reconcile``, so the outcome never depends on which event came
first, and running it twice does nothing new.

Status ownership: the capture pod writes ``captureState``, ``captureReason``,
``framesCaptured``, ``kept``, ``storeError`` and ``lastFrameAt``; the operator writes the rest
(``state``, ``conditions``, ``podName``, times, ``restarts``, ``store``,
``consecutiveExits``, ``nextAttemptAt``, ``failedInputs``).

Level-based, against the spec:

- The pod carries the hash of the spec it was made from (podspec.spec_hash:
  source, captureInterval, topK, grid; not state or the TTL). A pod whose
  hash differs is deleted gracefully (the worker flushes its kept frames and
  manifest) and a new one created once it is gone. ``observedGeneration``
  moves only when the pod runs the current generation's spec (or the stream
  is stopping). No reset: the frames belong to the stream, not to one camera
  URL or setting, so the new worker restores the top K from the store
  (worker.restore: a smaller topK keeps the brightest of the kept, a larger
  one keeps them all and fills up) and the count goes on. A user who wants a
  fresh start with another camera creates another stream.
- A capture pod that exits is recreated after a capped exponential backoff
  (``pod_backoff_initial_seconds`` doubling to ``pod_backoff_max_seconds``,
  ``status.nextAttemptAt``); ``pod_restart_limit`` exits in a row (no Active
  between) fail the stream, and so does at once an exit that a retry cannot
  mend (PERMANENT_EXITS). The Failed reason names the cause: the worker's
  ``captureReason``, else the container's termination message.
- A Failed stream is retried when something it depends on changes
  (``status.failedInputs``): its spec (a new generation), its credentials
  Secret (created, fixed), or the annotation ``streamgrid.io/retry`` (set it
  to any new value: ``kubectl annotate vstream NAME streamgrid.io/retry=$(date
  +%s) --overwrite``). Stopped and Running again restarts it too.
- A credentials Secret that does not exist keeps the stream Pending with the
  reason, a ``SecretMissing`` Event and the ``CredentialsFound`` condition,
  until it appears (the Secret is read at each reconcile: the periodic one
  notices it within ``reconcile_interval_seconds``).
- Events: PodCreated, PodReplaced, PodLost, PodExited, Reconnecting, Failed,
  Retrying, SecretMissing, Stopped. ``restarts`` counts every recreation, a
  lost pod's too; ``status.podName`` is cleared when the operator deletes the
  pod itself, so a pod that vanishes while named was lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..capture.worker import EXIT_BAD_SETTINGS, EXIT_FAILED
from ..core.logs import log_event
from ..core.timestamps import format_utc, parse_utc
from ..core.urls import mask_secrets
from .podspec import SPEC_HASH_ANNOTATION, capture_pod, pod_name, spec_hash, store_url_for
from .provision import ProvisionError, bounded, report_problem
from .settings import OperatorSettings

log = logging.getLogger("streamgrid.operator")

TERMINAL_POD_PHASES = ("Succeeded", "Failed")
RETRY_ANNOTATION = "streamgrid.io/retry"
# Exits a recreated pod would repeat (the camera refused us; the worker
# refused its settings): the stream fails at once, saying why.
PERMANENT_EXITS = {
    EXIT_FAILED: "the camera refused the stream",
    EXIT_BAD_SETTINGS: "the capture worker refused its settings",
}
# The CRD's maxLength (charts/streamgrid/crds): the API server refuses a whole
# status patch with a longer string, after apply() has acted on the plan.
CONDITION_REASON_MAX = 256
# reconcile() reads the credentials Secret only when the plan depends on it
# (needs_credentials); otherwise plan() gets this and leaves what it said of
# the Secret as it was.
CREDENTIALS_NOT_READ = "\x00not-read"


@dataclass
class Plan:
    status: dict[str, Any] = field(default_factory=dict)
    create_pod: dict[str, Any] | None = None
    delete_pod: bool = False
    delete_stream: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)  # type, reason, message


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Conditions as Kubernetes does them: lastTransitionTime moves only when
    the status flips."""
    value = "True" if status else "False"
    out = [c for c in conditions if c.get("type") != type_]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    since = (
        previous["lastTransitionTime"]
        if previous and previous.get("status") == value
        else format_utc(now)
    )
    out.append(
        {
            "type": type_,
            "status": value,
            "reason": bounded(reason, CONDITION_REASON_MAX),
            "message": bounded(message),
            "lastTransitionTime": since,
            "observedGeneration": generation,
        }
    )
    return sorted(out, key=lambda c: str(c["type"]))


def _exit_code(pod: dict[str, Any]) -> int | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated is not None:
            return int(terminated.get("exitCode", 1))
    return None


def termination_message(pod: dict[str, Any]) -> str:
    """The last line the container left (its log's tail on a real kubelet:
    terminationMessagePolicy FallbackToLogsOnError), as one short phrase."""
    for status in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        lines = [line for line in str(terminated.get("message") or "").splitlines() if line]
        if not lines:
            continue
        last = lines[-1].strip()
        with contextlib.suppress(ValueError):
            record = json.loads(last)
            if isinstance(record, dict):  # our JSON log lines: the event and its why
                why = record.get("errors") or record.get("reason") or record.get("error") or ""
                last = f"{record.get('event', '')}: {why}".strip(": ")
        return mask_secrets(last)[:300]
    return ""


def backoff_seconds(exits_in_a_row: int, settings: OperatorSettings) -> float:
    """Capped exponential: initial, 2x initial, 4x ... up to the maximum."""
    exponent = max(0, min(exits_in_a_row - 1, 32))
    return float(
        min(settings.pod_backoff_initial_seconds * 2**exponent, settings.pod_backoff_max_seconds)
    )


def failure_inputs(stream: dict[str, Any], credentials_version: str | None) -> str:
    """What a failed attempt was made with: the spec's generation, the
    credentials Secret's version and the retry annotation (hashed: any
    value). A Failed stream is retried when any of them changes."""
    meta = stream["metadata"]
    if credentials_version == CREDENTIALS_NOT_READ:  # no Secret to speak of
        credentials_version = None
    retry = (meta.get("annotations") or {}).get(RETRY_ANNOTATION)
    digest = hashlib.sha256(retry.encode()).hexdigest()[:12] if retry is not None else "-"
    return (
        f"generation={meta.get('generation', 1)} secret={credentials_version or '-'} retry={digest}"
    )


def retry_cause(status: dict[str, Any], inputs: str, generation: int) -> str | None:
    """Why a Failed stream should be tried again, or None while nothing it
    depends on changed."""
    recorded = status.get("failedInputs")
    if recorded is None:  # failed under an operator that recorded no inputs
        return None if status.get("observedGeneration") == generation else "the spec changed"
    if recorded == inputs:
        return None
    before = dict(part.split("=", 1) for part in str(recorded).split() if "=" in part)
    now = dict(part.split("=", 1) for part in inputs.split())
    causes = {
        "generation": "the spec changed",
        "secret": "the credentials Secret changed",
        "retry": f"the {RETRY_ANNOTATION} annotation changed",
    }
    changed = [why for key, why in causes.items() if before.get(key) != now.get(key)]
    return ", ".join(changed) or "what it depends on changed"


# Env var -> the spec field it comes from, to say what a replacement changes.
_ENV_FIELDS = {
    "STREAMGRID_SOURCE_URL": "source.url",
    "STREAMGRID_CAPTURE_INTERVAL": "captureInterval",
    "STREAMGRID_TOP_K": "topK",
    "STREAMGRID_RTSP_TRANSPORT": "source.transport",
    "STREAMGRID_TLS_VERIFY": "source.tlsVerify",
    "STREAMGRID_GRID_TILE_WIDTH": "grid.tileWidth",
    "STREAMGRID_GRID_TILE_HEIGHT": "grid.tileHeight",
    "STREAMGRID_GRID_COLUMNS": "grid.columns",
    "STREAMGRID_SOURCE_USERNAME": "source.credentialsSecretRef",
    "STREAMGRID_SOURCE_PASSWORD": "source.credentialsSecretRef",
    "STREAMGRID_SOURCE_FULL_URL": "source.credentialsSecretRef",
}


def describe_changes(old_pod: dict[str, Any], new_pod: dict[str, Any]) -> str:
    """``captureInterval 1.0 -> 0.2, topK 9 -> 4``: the old pod's env against the new."""

    def env(pod: dict[str, Any]) -> dict[str, str]:
        found: dict[str, str] = {}
        for container in pod.get("spec", {}).get("containers") or []:
            for item in container.get("env") or []:
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                value = f"Secret {ref.get('name')}" if ref else str(item.get("value", ""))
                found[str(item["name"])] = value
        return found

    def short(value: str) -> str:  # a 2048-character URL: both ends, still readable
        return value if len(value) <= 120 else f"{value[:80]}\u2026{value[-30:]}"

    before, after = env(old_pod), env(new_pod)
    changes: dict[str, str] = {}
    for name in [*after, *(n for n in before if n not in after)]:
        old, new = before.get(name, "unset"), after.get(name, "unset")
        if old != new and name in _ENV_FIELDS:
            changes.setdefault(
                _ENV_FIELDS[name], f"{_ENV_FIELDS[name]} {short(old)} -> {short(new)}"
            )
    return ", ".join(changes.values()) or "the capture settings"


def plan(
    stream: dict[str, Any],
    pod: dict[str, Any] | None,
    settings: OperatorSettings,
    now: datetime,
    credentials_version: str | None = None,
    progress_interval: float | None = None,
) -> Plan:
    """``credentials_version``: the resourceVersion of the Secret named by
    spec.source.credentialsSecretRef, None when it is missing,
    CREDENTIALS_NOT_READ when the plan does not depend on it.
    ``progress_interval``: how often capture pods should report counts now
    (the fleet's pace, controller.FleetPacer); the pod reads it from the
    answer to its next status PATCH."""
    meta, spec = stream["metadata"], stream.get("spec", {})
    status: dict[str, Any] = dict(stream.get("status") or {})
    generation = int(meta.get("generation", 1))
    name, namespace = meta["name"], meta["namespace"]
    desired = spec.get("state", "Running")
    result = Plan()
    new: dict[str, Any] = {}
    if "store" not in status:
        prefix = f"{store_url_for(settings.store_url, namespace)}/{name}"
        new["store"] = {"url": f"{prefix}/", "manifest": f"{prefix}/manifest.json"}
    pod_gone = pod is None or bool(pod["metadata"].get("deletionTimestamp"))
    phase = (pod or {}).get("status", {}).get("phase", "Pending")
    pod_hash = ((pod or {}).get("metadata", {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    # A pod without the hash was made by an operator before it: it runs the
    # spec it was made from as long as the generation has not moved since.
    matches = pod is not None and (
        pod_hash == spec_hash(spec)
        if pod_hash is not None
        else status.get("observedGeneration") == generation
    )
    capture_state = status.get("captureState")
    previous_state = status.get("state")
    # The capture pod's last word, else what we said before (never blank it out).
    reason = status.get("captureReason") or status.get("reason", "")
    restarts = int(status.get("restarts", 0))
    exits_in_a_row = int(status.get("consecutiveExits", 0))
    next_attempt = parse_utc(status.get("nextAttemptAt"))
    secret_ref = (spec.get("source") or {}).get("credentialsSecretRef") or {}
    secret_name: str | None = secret_ref.get("name")
    secret_known = credentials_version != CREDENTIALS_NOT_READ
    secret_missing = secret_name is not None and credentials_version is None
    inputs = failure_inputs(stream, credentials_version)
    # status.podName names the pod the stream should have; the operator clears
    # it when it deletes the pod itself, so a pod gone while named was lost.
    expected_pod = bool(status.get("podName")) and previous_state not in ("Stopped", "Failed")
    # observedGeneration moves only once the pod runs this generation's spec.
    observed = False
    replacing = False

    def retire_pod() -> None:
        result.delete_pod = True
        new["podName"] = None

    if desired == "Stopped":
        observed = True
        if pod is not None and not pod_gone:
            retire_pod()
        if pod is None:
            state = "Stopped"
            new.update(podName=None, consecutiveExits=None, nextAttemptAt=None)
            if previous_state != "Stopped":
                new["stoppedAt"] = format_utc(now)
                result.events.append(("Normal", "Stopped", "capture stopped"))
            stopped_at = parse_utc(new.get("stoppedAt") or status.get("stoppedAt"))
            ttl = spec.get("ttlSecondsAfterStopped", settings.default_ttl_seconds)
            if stopped_at is not None and (now - stopped_at).total_seconds() >= ttl:
                result.delete_stream = True
        else:
            state = "Stopping"
    elif previous_state == "Failed" and (why := retry_cause(status, inputs, generation)) is None:
        state = "Failed"  # until what it depends on changes (retry_cause) or it is stopped
        if pod is not None and not pod_gone and phase in TERMINAL_POD_PHASES:
            retire_pod()
    else:
        if previous_state == "Failed":
            result.events.append(("Normal", "Retrying", f"retrying the failed stream: {why}"))
            restarts, exits_in_a_row, next_attempt, reason = 0, 0, None, ""
            new.update(restarts=0, consecutiveExits=None, nextAttemptAt=None, failedInputs=None)
        if previous_state == "Failed" and pod is not None and not pod_gone:
            retire_pod()  # the failed attempt's pod goes first
            state = "Pending"
        elif pod is None or pod_gone:
            if expected_pod:
                restarts += 1
                new["restarts"] = restarts
                new["podName"] = None  # counted once
                reason = f"capture pod {pod_name(name)} was deleted or lost; recreating it"
                result.events.append(("Warning", "PodLost", reason))
            if pod is not None:
                state = "Reconnecting"  # it is going away; recreated once it is gone
            elif secret_missing:
                state = "Pending"
                reason = f"credentials Secret {secret_name} not found in namespace {namespace}"
                if status.get("reason") != reason:
                    result.events.append(("Warning", "SecretMissing", reason))
            elif (
                next_attempt is not None
                and now < next_attempt
                and status.get("observedGeneration") == generation  # an edit may be the fix
            ):
                state = "Reconnecting"  # backing off; the daemon wakes at nextAttemptAt
            else:
                result.create_pod = capture_pod(stream, settings)
                observed = True
                new.update(podName=pod_name(name), nextAttemptAt=None)
                new.setdefault("startedAt", status.get("startedAt") or format_utc(now))
                new["stoppedAt"] = None  # running again
                state = "Reconnecting" if restarts else "Pending"
                if state == "Pending":
                    reason = ""
                what = f"recreated (restart {restarts})" if restarts else "created"
                result.events.append(
                    ("Normal", "PodCreated", f"capture pod {pod_name(name)} {what}")
                )
        elif not matches:
            replacing = True
            retire_pod()
            changes = describe_changes(pod, capture_pod(stream, settings))
            state = "Reconnecting"
            reason = f"applying the changed spec ({changes}): replacing the capture pod"
            result.events.append(
                (
                    "Normal",
                    "PodReplaced",
                    f"spec changed ({changes}): capture pod {pod_name(name)} replaced; "
                    "its kept frames carry over",
                )
            )
        elif phase in TERMINAL_POD_PHASES:
            observed = True
            retire_pod()
            code = _exit_code(pod)
            cause = status.get("captureReason") or termination_message(pod)
            if code in PERMANENT_EXITS:
                state = "Failed"
                reason = f"{PERMANENT_EXITS[code]}: {cause}" if cause else PERMANENT_EXITS[code]
                result.events.append(("Warning", "Failed", reason))
            else:
                restarts, exits_in_a_row = restarts + 1, exits_in_a_row + 1
                new.update(restarts=restarts, consecutiveExits=exits_in_a_row)
                said = f" ({cause})" if cause else ""
                if exits_in_a_row > settings.pod_restart_limit:
                    state = "Failed"
                    reason = (
                        f"capture pod exited {exits_in_a_row} times in a row "
                        f"(last code {code}){said}"
                    )
                    result.events.append(("Warning", "Failed", reason))
                else:
                    delay = backoff_seconds(exits_in_a_row, settings)
                    new["nextAttemptAt"] = format_utc(now + timedelta(seconds=delay))
                    state = "Reconnecting"
                    reason = (
                        f"capture pod exited with code {code}{said}; recreating it in {delay:g} s"
                    )
                    result.events.append(("Warning", "PodExited", reason))
            if state == "Failed":
                new["failedInputs"] = inputs
        elif phase == "Running":
            observed = True
            running = ("Connecting", "Active", "Reconnecting")
            state = capture_state if capture_state in running else "Connecting"
            if state == "Reconnecting" and previous_state != "Reconnecting":
                result.events.append(("Warning", "Reconnecting", reason or "reconnecting"))
            if state == "Active":  # a healthy run ends a crash loop
                new.update(consecutiveExits=None, nextAttemptAt=None)
        else:
            observed = True
            state = "Pending"

    if observed:
        new["observedGeneration"] = generation
    if progress_interval is not None and desired == "Running" and state != "Failed":
        new["progressIntervalSeconds"] = progress_interval
    applied = new.get("observedGeneration", status.get("observedGeneration")) == generation
    new["state"] = state
    reason = bounded(reason)  # the one place every reason written passes
    if state in ("Failed", "Reconnecting", "Pending"):
        new["reason"] = reason
    elif state == "Active":
        new["reason"] = ""
    if state == "Failed" and previous_state != "Failed":
        new.setdefault("stoppedAt", format_utc(now))
    conditions = list(status.get("conditions") or [])
    conditions = set_condition(
        conditions, "Ready", state == "Active", state, new.get("reason", ""), generation, now
    )
    conditions = set_condition(
        conditions,
        "Connected",
        state == "Active",
        capture_state or "NoReport",
        reason,
        generation,
        now,
    )
    conditions = set_condition(
        conditions,
        "Stopped",
        state == "Stopped",
        "Stopped" if state == "Stopped" else desired,
        "",
        generation,
        now,
    )
    conditions = set_condition(
        conditions,
        "SpecApplied",
        applied,
        "Applied" if applied else ("ReplacingPod" if replacing else "PodNotCreated"),
        f"the capture pod runs generation {generation}'s spec" if applied else reason,
        generation,
        now,
    )
    if desired == "Running" and secret_name is not None and secret_known:
        conditions = set_condition(
            conditions,
            "CredentialsFound",
            not secret_missing,
            "SecretMissing" if secret_missing else "SecretFound",
            f"Secret {secret_name} {'not found' if secret_missing else 'found'} in {namespace}",
            generation,
            now,
        )
    elif secret_name is None:
        conditions = [c for c in conditions if c.get("type") != "CredentialsFound"]
    new["conditions"] = conditions
    result.events = [(type_, why, bounded(message)) for type_, why, message in result.events]
    result.status = {k: v for k, v in new.items() if status.get(k) != v}
    return result


class StreamApi(Protocol):
    """The API calls reconcile needs (implemented over the kubernetes client)."""

    def get_stream(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_pod(self, namespace: str, body: dict[str, Any]) -> object: ...

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> object: ...

    def delete_stream(self, namespace: str, name: str) -> None: ...

    def patch_stream_status(self, namespace: str, name: str, status: dict[str, Any]) -> object: ...

    def event(self, stream: dict[str, Any], type_: str, reason: str, message: str) -> None: ...

    def secret_version(self, namespace: str, name: str) -> str | None:
        """The Secret's resourceVersion; None when there is none."""

    def prepare_namespace(self, namespace: str) -> None:
        """What capture pods need there (provision.py); raises ProvisionError."""


def apply(api: StreamApi, stream: dict[str, Any], result: Plan, settings: OperatorSettings) -> None:
    meta = stream["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if result.create_pod is not None:
        try:  # any namespace: its ServiceAccount, Role and S3 Secret first
            api.prepare_namespace(namespace)
        except ProvisionError as exc:
            report_problem(api, stream, "ProvisioningFailed", bounded(str(exc)))
            raise  # the caller tries again after a backoff (controller: queue.retry)
        api.create_pod(namespace, result.create_pod)
        log_event(
            log,
            "pod.created",
            stream=name,
            namespace=namespace,
            pod=result.create_pod["metadata"]["name"],
        )
    if result.delete_pod:
        api.delete_pod(namespace, pod_name(name), settings.termination_grace_seconds)
        log_event(log, "pod.deleted", stream=name, namespace=namespace)
    if result.status and not result.delete_stream:
        api.patch_stream_status(namespace, name, result.status)
    for type_, reason, message in result.events:
        api.event(stream, type_, reason, message)
    if result.delete_stream:
        api.delete_stream(namespace, name)
        log_event(log, "stream.expired", stream=name, namespace=namespace)


def needs_credentials(stream: dict[str, Any], pod: dict[str, Any] | None) -> str | None:
    """The credentials Secret's name when the plan depends on it: a pod is to
    be made (a missing Secret keeps the stream Pending) or a Failed stream
    waits for it to change. A running pod has its env already: no read."""
    spec = stream.get("spec") or {}
    name = ((spec.get("source") or {}).get("credentialsSecretRef") or {}).get("name")
    if not name or spec.get("state", "Running") != "Running":
        return None
    pod_gone = pod is None or bool(pod["metadata"].get("deletionTimestamp"))
    exited = (pod or {}).get("status", {}).get("phase") in TERMINAL_POD_PHASES
    failed = (stream.get("status") or {}).get("state") == "Failed"
    return str(name) if pod_gone or exited or failed else None


def reconcile(
    api: StreamApi,
    settings: OperatorSettings,
    namespace: str,
    name: str,
    progress_interval: float | None = None,
) -> Plan | None:
    stream = api.get_stream(namespace, name)
    if stream is None or stream["metadata"].get("deletionTimestamp"):
        return None
    pod = api.get_pod(namespace, pod_name(name))
    credentials_version: str | None = CREDENTIALS_NOT_READ
    if (secret := needs_credentials(stream, pod)) is not None:
        credentials_version = api.secret_version(namespace, secret)
    result = plan(stream, pod, settings, datetime.now(UTC), credentials_version, progress_interval)
    apply(api, stream, result, settings)
    return result
