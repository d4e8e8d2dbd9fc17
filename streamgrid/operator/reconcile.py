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
  mend (core/restarts.py PERMANENT_EXITS). The Failed reason names the cause: the worker's
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
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..core import crd
from ..core.crd import SPEC_HASH_ANNOTATION, TEMPLATE_HASH_ANNOTATION
from ..core.logs import log_event
from ..core.models import StreamState
from ..core.restarts import permanent_exit
from ..core.timestamps import format_utc, parse_utc
from ..core.urls import mask_secrets
from .podspec import capture_pod, pod_name, spec_hash, store_url_for, template_hash
from .provision import ProvisionError, bounded, report_problem
from .settings import OperatorSettings

log = logging.getLogger("streamgrid.operator")

TERMINAL_POD_PHASES = ("Succeeded", "Failed")
RETRY_ANNOTATION = crd.RETRY_ANNOTATION
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
    rolled: bool = False  # the pod goes for a new template (the controller's rollout budget)


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
    """The wait before recreating a pod that exited, before its jitter
    (core/restarts.py: capped exponential, one policy for both runtimes)."""
    return settings.restart_policy().base_delay(exits_in_a_row)


def jittered_backoff(
    stream: dict[str, Any], exits_in_a_row: int, settings: OperatorSettings
) -> float:
    """The wait itself: its jitter drawn from the stream's uid and the exit's
    number, so that plan() stays a function of its inputs (the same plan
    twice) while streams that failed together come back spread out."""
    rng = random.Random(f"{stream['metadata'].get('uid', '')}:{exits_in_a_row}")
    return round(settings.restart_policy().delay(exits_in_a_row, rng), 1)


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


@dataclass
class Step:
    """One plan in the making: what was observed (read-only after
    ``observe``) and what the branch decides (state, reason, the status
    fields to write, the plan's actions)."""

    stream: dict[str, Any]
    pod: dict[str, Any] | None
    settings: OperatorSettings
    now: datetime
    credentials_version: str | None
    status: dict[str, Any]
    generation: int
    name: str
    namespace: str
    desired: str
    pod_gone: bool
    phase: str
    matches: bool  # the pod runs the current spec
    capture_state: str | None
    previous_state: str | None
    secret_name: str | None
    secret_missing: bool
    inputs: str
    expected_pod: bool  # status.podName names a pod the stream should have
    outdated: bool  # the pod runs an older pod template (another image, say)
    paused: bool  # the streamgrid.io/paused annotation: hands off
    # -- decided
    result: Plan = field(default_factory=Plan)
    new: dict[str, Any] = field(default_factory=dict)
    state: StreamState = StreamState.PENDING
    reason: str = ""
    restarts: int = 0
    exits_in_a_row: int = 0
    next_attempt: datetime | None = None
    observed: bool = False  # observedGeneration moves: the pod runs this spec
    replacing: bool = False

    def event(self, type_: str, reason: str, message: str) -> None:
        self.result.events.append((type_, reason, message))

    def retire_pod(self) -> None:
        self.result.delete_pod = True
        self.new["podName"] = None


def pod_outdated(pod: dict[str, Any] | None, settings: OperatorSettings) -> bool:
    """Whether a pod runs an older template than these settings make. A pod
    made before templates were hashed is left alone (no mass replacement on
    the first upgrade to an operator that hashes them)."""
    annotations = (pod or {}).get("metadata", {}).get("annotations") or {}
    made_from = annotations.get(TEMPLATE_HASH_ANNOTATION)
    return made_from is not None and made_from != template_hash(settings)


def observe(
    stream: dict[str, Any],
    pod: dict[str, Any] | None,
    settings: OperatorSettings,
    now: datetime,
    credentials_version: str | None,
) -> Step:
    meta, spec = stream["metadata"], stream.get("spec", {})
    status: dict[str, Any] = dict(stream.get("status") or {})
    generation = int(meta.get("generation", 1))
    pod_hash = ((pod or {}).get("metadata", {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    previous_state = status.get("state")
    secret_ref = (spec.get("source") or {}).get("credentialsSecretRef") or {}
    secret_name: str | None = secret_ref.get("name")
    annotations = meta.get("annotations") or {}
    step = Step(
        stream=stream,
        pod=pod,
        settings=settings,
        now=now,
        credentials_version=credentials_version,
        status=status,
        generation=generation,
        name=meta["name"],
        namespace=meta["namespace"],
        desired=spec.get("state", "Running"),
        pod_gone=pod is None or bool(pod["metadata"].get("deletionTimestamp")),
        phase=(pod or {}).get("status", {}).get("phase", "Pending"),
        # A pod without the hash was made by an operator before it: it runs the
        # spec it was made from as long as the generation has not moved since.
        matches=pod is not None
        and (
            pod_hash == spec_hash(spec)
            if pod_hash is not None
            else status.get("observedGeneration") == generation
        ),
        capture_state=status.get("captureState"),
        previous_state=previous_state,
        secret_name=secret_name,
        secret_missing=secret_name is not None and credentials_version is None,
        inputs=failure_inputs(stream, credentials_version),
        # status.podName names the pod the stream should have; the operator clears
        # it when it deletes the pod itself, so a pod gone while named was lost.
        expected_pod=bool(status.get("podName")) and previous_state not in ("Stopped", "Failed"),
        outdated=pod_outdated(pod, settings),
        paused=str(annotations.get(crd.PAUSED_ANNOTATION, "")).lower() == "true",
        # The capture pod's last word, else what we said before (never blank it out).
        reason=status.get("captureReason") or status.get("reason", ""),
        restarts=int(status.get("restarts", 0)),
        exits_in_a_row=int(status.get("consecutiveExits", 0)),
        next_attempt=parse_utc(status.get("nextAttemptAt")),
    )
    if "store" not in status:
        prefix = f"{store_url_for(settings.store_url, step.namespace)}/{step.name}"
        step.new["store"] = {"url": f"{prefix}/", "manifest": f"{prefix}/manifest.json"}
    return step


def plan_stopped(step: Step) -> None:
    """spec.state Stopped: the pod goes; Stopped once it is gone, then the TTL."""
    step.observed = True
    if step.pod is not None and not step.pod_gone:
        step.retire_pod()
    if step.pod is not None:
        step.state = StreamState.STOPPING
        return
    step.state = StreamState.STOPPED
    step.new.update(podName=None, consecutiveExits=None, nextAttemptAt=None)
    if step.previous_state != "Stopped":
        step.new["stoppedAt"] = format_utc(step.now)
        step.event("Normal", "Stopped", "capture stopped")
    stopped_at = parse_utc(step.new.get("stoppedAt") or step.status.get("stoppedAt"))
    ttl = step.stream.get("spec", {}).get(
        "ttlSecondsAfterStopped", step.settings.default_ttl_seconds
    )
    if stopped_at is not None and (step.now - stopped_at).total_seconds() >= ttl:
        step.result.delete_stream = True


def plan_still_failed(step: Step) -> None:
    """Failed, and nothing it depends on changed (retry_cause): it stays so."""
    step.state = StreamState.FAILED
    if step.pod is not None and not step.pod_gone and step.phase in TERMINAL_POD_PHASES:
        step.retire_pod()


def plan_retry(step: Step, why: str) -> None:
    """A Failed stream whose inputs changed: counts start again."""
    step.event("Normal", "Retrying", f"retrying the failed stream: {why}")
    step.restarts, step.exits_in_a_row, step.next_attempt, step.reason = 0, 0, None, ""
    step.new.update(restarts=0, consecutiveExits=None, nextAttemptAt=None, failedInputs=None)


def plan_without_pod(step: Step) -> None:
    """No pod (or one going away): make one, unless it must wait."""
    if step.expected_pod:
        step.restarts += 1
        step.new["restarts"] = step.restarts
        step.new["podName"] = None  # counted once
        step.reason = f"capture pod {pod_name(step.name)} was deleted or lost; recreating it"
        step.event("Warning", "PodLost", step.reason)
    if step.pod is not None:
        step.state = StreamState.RECONNECTING  # it is going away; recreated once it is gone
    elif step.secret_missing:
        step.state = StreamState.PENDING
        step.reason = (
            f"credentials Secret {step.secret_name} not found in namespace {step.namespace}"
        )
        if step.status.get("reason") != step.reason:
            step.event("Warning", "SecretMissing", step.reason)
    elif (
        step.next_attempt is not None
        and step.now < step.next_attempt
        and step.status.get("observedGeneration") == step.generation  # an edit may be the fix
    ):
        step.state = StreamState.RECONNECTING  # backing off; the daemon wakes at nextAttemptAt
    else:
        step.result.create_pod = capture_pod(step.stream, step.settings)
        step.observed = True
        step.new.update(podName=pod_name(step.name), nextAttemptAt=None)
        step.new.setdefault("startedAt", step.status.get("startedAt") or format_utc(step.now))
        step.new["stoppedAt"] = None  # running again
        step.state = StreamState.RECONNECTING if step.restarts else StreamState.PENDING
        if step.state is StreamState.PENDING:
            step.reason = ""
        what = f"recreated (restart {step.restarts})" if step.restarts else "created"
        step.event("Normal", "PodCreated", f"capture pod {pod_name(step.name)} {what}")


def plan_replace(step: Step, pod: dict[str, Any]) -> None:
    """The pod runs an older spec: it goes (gracefully), a new one follows."""
    step.replacing = True
    step.retire_pod()
    changes = describe_changes(pod, capture_pod(step.stream, step.settings))
    step.state = StreamState.RECONNECTING
    step.reason = f"applying the changed spec ({changes}): replacing the capture pod"
    step.event(
        "Normal",
        "PodReplaced",
        f"spec changed ({changes}): capture pod {pod_name(step.name)} replaced; "
        "its kept frames carry over",
    )


def plan_roll(step: Step, pod: dict[str, Any]) -> None:
    """The pod runs an older template (an upgrade): it goes, gracefully, and a
    new one follows; the controller lets only so many go at once."""
    step.result.rolled = True
    step.retire_pod()
    image = step.settings.capture_image
    step.state = StreamState.RECONNECTING
    step.reason = f"rolling out the new capture pod template ({image}): replacing the capture pod"
    step.event(
        "Normal",
        "PodReplaced",
        f"capture pod template changed ({image}): capture pod {pod_name(step.name)} replaced; "
        "its kept frames carry over",
    )


def plan_exited(step: Step, pod: dict[str, Any]) -> None:
    """The pod's container ended: for good (PERMANENT_EXITS, the restart
    limit), or recreated after its backoff."""
    step.observed = True
    step.retire_pod()
    code = _exit_code(pod)
    cause = step.status.get("captureReason") or termination_message(pod)
    policy = step.settings.restart_policy()
    if (permanent := permanent_exit(code)) is not None:
        step.state = StreamState.FAILED
        step.reason = f"{permanent}: {cause}" if cause else permanent
        step.event("Warning", "Failed", step.reason)
    else:
        step.restarts, step.exits_in_a_row = step.restarts + 1, step.exits_in_a_row + 1
        step.new.update(restarts=step.restarts, consecutiveExits=step.exits_in_a_row)
        said = f" ({cause})" if cause else ""
        if policy.gives_up(step.exits_in_a_row):
            step.state = StreamState.FAILED
            step.reason = (
                f"capture pod exited {step.exits_in_a_row} times in a row (last code {code}){said}"
            )
            step.event("Warning", "Failed", step.reason)
        else:
            delay = jittered_backoff(step.stream, step.exits_in_a_row, step.settings)
            step.new["nextAttemptAt"] = format_utc(step.now + timedelta(seconds=delay))
            step.state = StreamState.RECONNECTING
            step.reason = f"capture pod exited with code {code}{said}; recreating it in {delay:g} s"
            step.event("Warning", "PodExited", step.reason)
    if step.state is StreamState.FAILED:
        step.new["failedInputs"] = step.inputs


RUNNING_CAPTURE_STATES = (StreamState.CONNECTING, StreamState.ACTIVE, StreamState.RECONNECTING)


def plan_running(step: Step) -> None:
    """The pod runs: the stream is what its worker last reported."""
    step.observed = True
    reported = step.capture_state
    running = [s.value for s in RUNNING_CAPTURE_STATES]
    step.state = StreamState(reported) if reported in running else StreamState.CONNECTING
    if step.state is StreamState.RECONNECTING and step.previous_state != "Reconnecting":
        step.event("Warning", "Reconnecting", step.reason or "reconnecting")
    if step.state is StreamState.ACTIVE:  # a healthy run ends a crash loop
        step.new.update(consecutiveExits=None, nextAttemptAt=None)


def plan_running_stream(step: Step, may_roll: bool) -> None:
    """spec.state Running, and not a Failed stream left as it is."""
    pod = step.pod
    if step.previous_state == "Failed" and pod is not None and not step.pod_gone:
        step.retire_pod()  # the failed attempt's pod goes first
        step.state = StreamState.PENDING
    elif pod is None or step.pod_gone:
        plan_without_pod(step)
    elif not step.matches:
        plan_replace(step, pod)
    elif step.outdated and step.phase == "Running" and may_roll:
        plan_roll(step, pod)
    elif step.phase in TERMINAL_POD_PHASES:
        plan_exited(step, pod)
    elif step.phase == "Running":
        plan_running(step)
    else:
        step.observed = True
        step.state = StreamState.PENDING


def conditions_of(step: Step, applied: bool) -> list[dict[str, Any]]:
    """Ready, Connected, Stopped, SpecApplied and CredentialsFound, and
    kstatus' Reconciling and Stalled, for the state decided."""
    state, generation, now = step.state, step.generation, step.now
    conditions = list(step.status.get("conditions") or [])
    Type = crd.ConditionType

    def put(type_: crd.ConditionType, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, value, reason, message, generation, now)

    active = state is StreamState.ACTIVE
    # Ready: capturing, and with the current generation's spec.
    put(Type.READY, active and applied, state, step.new.get("reason", ""))
    put(Type.CONNECTED, active, step.capture_state or "NoReport", step.reason)
    stopped = state is StreamState.STOPPED
    put(Type.STOPPED, stopped, "Stopped" if stopped else step.desired, "")
    put(
        Type.SPEC_APPLIED,
        applied,
        "Applied" if applied else ("ReplacingPod" if step.replacing else "PodNotCreated"),
        f"the capture pod runs generation {generation}'s spec" if applied else step.reason,
    )
    why, message = reconciling(step, applied)
    put(Type.RECONCILING, why is not None, why or "Reconciled", message)
    failed = state is StreamState.FAILED
    put(Type.STALLED, failed, "Failed" if failed else "NotStalled", step.reason if failed else "")
    secret_known = step.credentials_version != CREDENTIALS_NOT_READ
    if step.desired == "Running" and step.secret_name is not None and secret_known:
        missing = step.secret_missing
        put(
            Type.CREDENTIALS_FOUND,
            not missing,
            "SecretMissing" if missing else "SecretFound",
            f"Secret {step.secret_name} {'not found' if missing else 'found'} in {step.namespace}",
        )
    elif step.secret_name is None:
        conditions = [c for c in conditions if c.get("type") != Type.CREDENTIALS_FOUND]
    if any(c.get("type") == Type.RECONCILIATION_PAUSED for c in conditions):
        put(Type.RECONCILIATION_PAUSED, False, "Resumed", "the paused annotation is gone")
    return conditions


def reconciling(step: Step, applied: bool) -> tuple[str | None, str]:
    """Why the operator is still working toward the spec (kstatus'
    Reconciling), or None: a pod being made or replaced, or the spec not yet
    applied, or a stop under way. A camera that does not answer is not
    reconciling: that is the Connected condition's business."""
    if step.state is StreamState.STOPPING:
        return "Stopping", "the capture pod is flushing its frames and going away"
    if step.desired != "Running" or step.state is StreamState.FAILED:
        return None, ""
    if step.replacing or step.result.rolled:
        return "ReplacingPod", step.reason
    if step.result.create_pod is not None or step.state is StreamState.PENDING:
        return "CreatingPod", step.reason or "the capture pod is being created"
    if step.pod is not None and step.pod_gone:
        return "ReplacingPod", step.reason
    if not applied:
        return "SpecNotApplied", step.reason
    return None, ""


def plan_paused(step: Step) -> Plan:
    """The paused annotation: nothing done, the pod left as it is; only the
    ReconciliationPaused condition says so."""
    conditions = set_condition(
        list(step.status.get("conditions") or []),
        crd.ConditionType.RECONCILIATION_PAUSED,
        True,
        "Paused",
        f"the {crd.PAUSED_ANNOTATION} annotation is true: the operator leaves this stream alone",
        step.generation,
        step.now,
    )
    result = Plan()
    if conditions != step.status.get("conditions"):
        result.status = crd.status_patch({"conditions": conditions})
    return result


def plan(
    stream: dict[str, Any],
    pod: dict[str, Any] | None,
    settings: OperatorSettings,
    now: datetime,
    credentials_version: str | None = None,
    progress_interval: float | None = None,
    may_roll: bool = True,
) -> Plan:
    """``credentials_version``: the resourceVersion of the Secret named by
    spec.source.credentialsSecretRef, None when it is missing,
    CREDENTIALS_NOT_READ when the plan does not depend on it.
    ``progress_interval``: how often capture pods should report counts now
    (the fleet's pace, controller.FleetPacer); the pod reads it from the
    answer to its next status PATCH. ``may_roll``: whether a pod on an older
    template may go now (the controller's rollout budget)."""
    step = observe(stream, pod, settings, now, credentials_version)
    if step.paused:
        return plan_paused(step)
    if step.desired == "Stopped":
        plan_stopped(step)
    elif (
        step.previous_state == "Failed"
        and (why := retry_cause(step.status, step.inputs, step.generation)) is None
    ):
        plan_still_failed(step)
    else:
        if step.previous_state == "Failed":
            plan_retry(step, why or "")
        plan_running_stream(step, may_roll)
    return finish(step, progress_interval)


def finish(step: Step, progress_interval: float | None) -> Plan:
    """What every branch writes: observedGeneration, the pace, state and
    reason, conditions; only what changed, through the contract."""
    new, status, state = step.new, step.status, step.state
    if step.observed:
        new["observedGeneration"] = step.generation
    if (
        progress_interval is not None
        and step.desired == "Running"
        and state is not (StreamState.FAILED)
    ):
        new["progressIntervalSeconds"] = progress_interval
    applied = new.get("observedGeneration", status.get("observedGeneration")) == step.generation
    new["state"] = state.value
    step.reason = bounded(step.reason)  # the one place every reason written passes
    if state in (StreamState.FAILED, StreamState.RECONNECTING, StreamState.PENDING):
        new["reason"] = step.reason
    elif state is StreamState.ACTIVE:
        new["reason"] = ""
    if state is StreamState.FAILED and step.previous_state != "Failed":
        new.setdefault("stoppedAt", format_utc(step.now))
    new["conditions"] = conditions_of(step, applied)
    result = step.result
    result.events = [(type_, why, bounded(message)) for type_, why, message in result.events]
    changed = {k: v for k, v in new.items() if status.get(k) != v}
    result.status = crd.status_patch(changed) if changed else {}
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
    may_roll: Callable[[], bool] = lambda: True,
) -> Plan | None:
    """``may_roll``: asked only when the stream's pod runs an older template."""
    stream = api.get_stream(namespace, name)
    if stream is None or stream["metadata"].get("deletionTimestamp"):
        return None
    pod = api.get_pod(namespace, pod_name(name))
    credentials_version: str | None = CREDENTIALS_NOT_READ
    if (secret := needs_credentials(stream, pod)) is not None:
        credentials_version = api.secret_version(namespace, secret)
    rolls = pod_outdated(pod, settings) and may_roll()
    now = datetime.now(UTC)
    result = plan(stream, pod, settings, now, credentials_version, progress_interval, rolls)
    apply(api, stream, result, settings)
    return result
