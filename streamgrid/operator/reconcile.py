"""What the operator does about one VideoStream, decided by a pure function.

``plan(stream, pod, settings, now)`` looks at the resource and its capture Pod
and returns a Plan: create the pod, delete it, delete the stream (TTL), and
the status to write. ``apply`` carries it out; ``reconcile`` does both. Every
handler calls ``reconcile``, so the outcome never depends on which event came
first, and running it twice does nothing new.

Status ownership: the capture pod writes ``captureState``, ``captureReason``,
``framesCaptured``, ``kept``, ``storeError`` and ``lastFrameAt``; the operator writes the rest
(``state``, ``conditions``, ``podName``, times, ``restarts``, ``store``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ..capture.worker import EXIT_FAILED
from ..core.logs import log_event
from ..core.timestamps import format_utc, parse_utc
from .podspec import capture_pod, pod_name, store_url_for
from .settings import OperatorSettings

log = logging.getLogger("streamgrid.operator")

TERMINAL_POD_PHASES = ("Succeeded", "Failed")


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
            "reason": reason,
            "message": message[:1024],
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


def plan(
    stream: dict[str, Any], pod: dict[str, Any] | None, settings: OperatorSettings, now: datetime
) -> Plan:
    meta, spec = stream["metadata"], stream.get("spec", {})
    status: dict[str, Any] = dict(stream.get("status") or {})
    generation = int(meta.get("generation", 1))
    name, namespace = meta["name"], meta["namespace"]
    desired = spec.get("state", "Running")
    result = Plan()
    new: dict[str, Any] = {"observedGeneration": generation}
    if "store" not in status:
        prefix = f"{store_url_for(settings.store_url, namespace)}/{name}"
        new["store"] = {"url": f"{prefix}/", "manifest": f"{prefix}/manifest.json"}
    pod_gone = pod is None or bool(pod["metadata"].get("deletionTimestamp"))
    phase = (pod or {}).get("status", {}).get("phase", "Pending")
    capture_state = status.get("captureState")
    previous_state = status.get("state")
    # The capture pod's last word, else what we said before (never blank it out).
    reason = status.get("captureReason") or status.get("reason", "")

    if desired == "Stopped":
        if pod is not None and not pod["metadata"].get("deletionTimestamp"):
            result.delete_pod = True
        if pod is None:
            state = "Stopped"
            if previous_state != "Stopped":
                new["stoppedAt"] = format_utc(now)
                result.events.append(("Normal", "Stopped", "capture stopped"))
            stopped_at = parse_utc(new.get("stoppedAt") or status.get("stoppedAt"))
            ttl = spec.get("ttlSecondsAfterStopped", settings.default_ttl_seconds)
            if stopped_at is not None and (now - stopped_at).total_seconds() >= ttl:
                result.delete_stream = True
        else:
            state = "Stopping"
    elif previous_state == "Failed" and status.get("observedGeneration") == generation:
        state = "Failed"  # until the user edits the spec (a new generation) or stops it
        if pod is not None and not pod_gone and phase in TERMINAL_POD_PHASES:
            result.delete_pod = True
    elif pod is None:
        if previous_state == "Failed":  # the spec changed since: a fresh start
            new["restarts"] = 0
            reason = ""
        result.create_pod = capture_pod(stream, settings)
        new.setdefault("startedAt", status.get("startedAt") or format_utc(now))
        new["podName"] = pod_name(name)
        state = "Reconnecting" if status.get("restarts") else "Pending"
    elif pod_gone:
        state = "Reconnecting"  # it is going away; recreated once it is gone
    elif phase in TERMINAL_POD_PHASES:
        code = _exit_code(pod)
        if code == EXIT_FAILED:
            state = "Failed"
            reason = reason or "the camera refused the connection"
            result.events.append(("Warning", "Failed", reason))
        else:
            restarts = int(status.get("restarts", 0)) + 1
            new["restarts"] = restarts
            if restarts > settings.pod_restart_limit:
                state = "Failed"
                reason = f"capture pod exited {restarts} times (last code {code})"
                result.events.append(("Warning", "Failed", reason))
            else:
                state = "Reconnecting"
                reason = f"capture pod exited with code {code}; recreating"
                result.events.append(("Warning", "PodExited", reason))
        result.delete_pod = True
    elif phase == "Running":
        running = ("Connecting", "Active", "Reconnecting")
        state = capture_state if capture_state in running else "Connecting"
    else:
        state = "Pending"

    new["state"] = state
    if state in ("Failed", "Reconnecting", "Pending"):
        new["reason"] = reason if state != "Pending" else ""
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
    new["conditions"] = conditions
    result.status = {k: v for k, v in new.items() if status.get(k) != v}
    return result


class StreamApi(Protocol):
    """The API calls reconcile needs (implemented over the kubernetes client)."""

    def get_stream(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_pod(self, namespace: str, body: dict[str, Any]) -> None: ...

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None: ...

    def delete_stream(self, namespace: str, name: str) -> None: ...

    def patch_stream_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...

    def event(self, stream: dict[str, Any], type_: str, reason: str, message: str) -> None: ...


def apply(api: StreamApi, stream: dict[str, Any], result: Plan, settings: OperatorSettings) -> None:
    meta = stream["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if result.create_pod is not None:
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


def reconcile(api: StreamApi, settings: OperatorSettings, namespace: str, name: str) -> Plan | None:
    stream = api.get_stream(namespace, name)
    if stream is None or stream["metadata"].get("deletionTimestamp"):
        return None
    pod = api.get_pod(namespace, pod_name(name))
    result = plan(stream, pod, settings, datetime.now(UTC))
    apply(api, stream, result, settings)
    return result
