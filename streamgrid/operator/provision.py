"""What a capture pod needs in its stream's namespace, made there by the operator.

The operator watches every namespace, but the chart installs the capture
ServiceAccount, its Role and RoleBinding and the S3 Secret in the release's
namespace only. Another namespace must first be enabled by an admin (the
label ``streamgrid.io/capture=enabled``, or ``capture_namespaces``): its
capture pods hold the store's credentials, which a namespace editor must not
be able to bring there alone. Before it creates a capture pod there, the
operator makes them in the pod's namespace: the ServiceAccount, a Role with the rules the
chart gives the capture pods (its stream's status, get and patch) bound to it,
and a copy of the S3 Secret (only the two keys pods read).

The copies serve every stream of the namespace, so nothing owns them; the
label ``streamgrid.io/provisioned-by`` finds them (``kubectl delete
sa,role,rolebinding,secret -A -l streamgrid.io/provisioned-by``). A
namespace is checked again after ``provision_refresh_seconds``, not at every
reconcile. Anything the API refuses becomes a ``ProvisionError`` that says
what could not be made, where, and why.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..core.crd import (
    CAPTURE_NAMESPACE_ENABLED,
    CAPTURE_NAMESPACE_LABEL,
    GROUP,
    PROVISIONED_LABEL,
)
from ..core.kuberest import ApiError, KubeClient, segment
from ..core.logs import log_event
from .settings import OperatorSettings

RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _secrets(namespace: str) -> str:
    return f"/api/v1/namespaces/{segment(namespace)}/secrets"


log = logging.getLogger("streamgrid.operator")

# An admin's word that a namespace may run capture pods (and so hold a copy
# of the store's credentials): label it so, or list it in capture_namespaces.
PROVISIONER = "streamgrid-operator"
# The chart's streamgrid-capture Role (templates/rbac.yaml): the same rules.
CAPTURE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [GROUP], "resources": ["videostreams/status"], "verbs": ["get", "patch"]}
]


REASON_MAX = 1024  # status.reason, a condition's message, an Event's message (the CRD's)


def bounded(text: str, limit: int = REASON_MAX) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis saying so."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class ProvisionError(RuntimeError):
    """A user-facing reason a namespace cannot run capture pods."""


def _labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "streamgrid",
        "app.kubernetes.io/managed-by": PROVISIONER,
        PROVISIONED_LABEL: PROVISIONER,
    }


def service_account(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels()},
    }


def capture_role(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels()},
        "rules": CAPTURE_RULES,
    }


def capture_role_binding(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def secret_copy(source: dict[str, Any], namespace: str, keys: list[str]) -> dict[str, Any]:
    """The S3 Secret for another namespace: same name, only ``keys`` (what
    capture pods read), labelled as ours, no owner (it serves every stream)."""
    data = source.get("data") or {}
    missing = [key for key in keys if key not in data]
    if missing:
        raise ProvisionError(
            f"the S3 Secret {source['metadata']['name']} in namespace "
            f"{source['metadata']['namespace']} has no key {', '.join(missing)}"
        )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": source.get("type") or "Opaque",
        "metadata": {
            "name": source["metadata"]["name"],
            "namespace": namespace,
            "labels": _labels(),
        },
        "data": {key: data[key] for key in keys},
    }


def api_error_text(exc: ApiError) -> str:
    """The API server's own message (``... is forbidden: User ... cannot
    create ...``) when it sent one, else the HTTP reason."""
    try:
        message = str(json.loads(exc.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    return message or f"{exc.status} {exc.reason}"


class ProblemReporter(Protocol):
    def patch_stream_status(self, namespace: str, name: str, status: dict[str, Any]) -> object: ...

    def event(self, stream: dict[str, Any], type_: str, reason: str, message: str) -> None: ...


def report_problem(api: ProblemReporter, stream: dict[str, Any], reason: str, message: str) -> None:
    """What keeps a stream from running, where a kubectl user looks: the
    status reason (a stream with no state yet shows Pending, never a blank
    STATE) and a Warning Event, once per distinct message."""
    meta, status = stream["metadata"], stream.get("status") or {}
    message = bounded(message)  # an API server's text can be long; the CRD takes 1024
    if status.get("reason") == message and status.get("state"):
        return
    patch: dict[str, Any] = {"reason": message}
    if not status.get("state"):
        patch["state"] = "Pending"
    api.patch_stream_status(meta["namespace"], meta["name"], patch)
    api.event(stream, "Warning", reason, message)
    log_event(
        log, "stream.problem", logging.WARNING, stream=meta["name"], reason=reason, why=message
    )


class StreamReader(ProblemReporter, Protocol):
    def get_stream(self, namespace: str, name: str) -> dict[str, Any] | None: ...


def report_reconcile_failure(api: StreamReader, namespace: str, name: str, exc: ApiError) -> None:
    """An API call of a reconcile failed (say, a pod the API server refused):
    the user sees why; reporting is best effort, the original error stands."""
    try:
        stream = api.get_stream(namespace, name)
        if stream is not None and not stream["metadata"].get("deletionTimestamp"):
            report_problem(api, stream, "ReconcileFailed", api_error_text(exc))
    except ApiError as again:
        log_event(log, "stream.problem_unreported", logging.WARNING, why=str(again.reason))


class NamespaceProvisioner:
    """Makes sure a namespace has what capture pods need; remembers for a while."""

    def __init__(
        self,
        settings: OperatorSettings,
        api: KubeClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.clock = settings, clock
        self.api = api
        self._done: dict[str, float] = {}  # namespace -> when it was last made sure of
        self._lock = threading.Lock()
        self._namespace_locks: dict[str, threading.Lock] = {}

    @property
    def source_namespace(self) -> str | None:
        return self.settings.operator_namespace or self.settings.namespace

    def ensure(self, namespace: str) -> None:
        """Raises ProvisionError naming what could not be made; cached on success."""
        if self._fresh(namespace):
            return
        with self._lock:
            guard = self._namespace_locks.setdefault(namespace, threading.Lock())
        with guard:  # reconcile workers making pods in one namespace: one of them asks
            if not self._fresh(namespace):
                self._ensure(namespace)

    def _fresh(self, namespace: str) -> bool:
        with self._lock:
            done = self._done.get(namespace)
        return done is not None and self.clock() - done < self.settings.provision_refresh_seconds

    def _ensure(self, namespace: str) -> None:
        self._check_enabled(namespace)
        account = self.settings.capture_service_account
        self._create(
            "ServiceAccount",
            account,
            namespace,
            "/api/v1/namespaces/{}/serviceaccounts",
            service_account(namespace, account),
        )
        self._create(
            "Role",
            account,
            namespace,
            RBAC + "/namespaces/{}/roles",
            capture_role(namespace, account),
        )
        self._create(
            "RoleBinding",
            account,
            namespace,
            RBAC + "/namespaces/{}/rolebindings",
            capture_role_binding(namespace, account),
        )
        self._copy_s3_secret(namespace)
        with self._lock:
            self._done[namespace] = self.clock()
        log_event(log, "namespace.provisioned", namespace=namespace)

    def _check_enabled(self, namespace: str) -> None:
        """Raises ProvisionError unless an admin enabled ``namespace``."""
        if namespace == self.source_namespace or namespace in self.settings.capture_namespaces:
            return
        try:
            found = self.api.get(f"/api/v1/namespaces/{segment(namespace)}")
        except ApiError as exc:
            raise ProvisionError(
                f"cannot read namespace {namespace}: {api_error_text(exc)}"
            ) from None
        labels = (found.get("metadata") or {}).get("labels") or {}
        if labels.get(CAPTURE_NAMESPACE_LABEL) != CAPTURE_NAMESPACE_ENABLED:
            raise ProvisionError(
                f"namespace {namespace} is not enabled for capture pods: an admin labels it "
                f"{CAPTURE_NAMESPACE_LABEL}={CAPTURE_NAMESPACE_ENABLED} "
                "(its pods get the store's credentials)"
            )

    def forget(self, namespace: str) -> None:
        """Check the namespace again at the next ensure (something was missing)."""
        with self._lock:
            self._done.pop(namespace, None)

    def _create(
        self,
        kind: str,
        name: str,
        namespace: str,
        collection: str,
        body: dict[str, Any],
    ) -> None:
        """POSTs ``body`` to ``collection`` (a path with {} for the namespace)."""
        try:
            self.api.request("POST", collection.format(segment(namespace)), body=body)
            log_event(log, "namespace.created", kind=kind, name=name, namespace=namespace)
        except ApiError as exc:
            if exc.status == 409:  # there already (the chart's, or ours from before)
                return
            raise ProvisionError(
                f"cannot create {kind} {name} in namespace {namespace}: {api_error_text(exc)}"
            ) from None

    def _copy_s3_secret(self, namespace: str) -> None:
        name, source_namespace = self.settings.s3_secret_name, self.source_namespace
        if not name or namespace == source_namespace:
            return  # no Secret to give pods, or this is where it lives
        if source_namespace is None:
            raise ProvisionError(
                f"cannot copy the S3 Secret {name} into namespace {namespace}: the operator's "
                "namespace is unknown (set STREAMGRID_OPERATOR_NAMESPACE)"
            )
        keys = [self.settings.s3_access_key_key, self.settings.s3_secret_key_key]
        source = self._read_secret(name, source_namespace, "read the S3 Secret")
        if source is None:
            raise ProvisionError(f"the S3 Secret {name} is missing in namespace {source_namespace}")
        wanted = secret_copy(source, namespace, keys)
        existing = self._read_secret(name, namespace, "read the S3 Secret copy")
        try:
            if existing is None:
                self.api.request("POST", _secrets(namespace), body=wanted)
                log_event(log, "namespace.created", kind="Secret", name=name, namespace=namespace)
            elif (existing["metadata"].get("labels") or {}).get(PROVISIONED_LABEL) != PROVISIONER:
                # Someone else's Secret of that name: pods use it; never overwrite it.
                log_event(
                    log,
                    "namespace.secret_not_ours",
                    logging.WARNING,
                    name=name,
                    namespace=namespace,
                )
            elif existing.get("data") != wanted["data"]:
                self.api.request(
                    "PATCH",
                    f"{_secrets(namespace)}/{segment(name)}",
                    body={"data": wanted["data"]},
                    content_type="application/merge-patch+json",
                )
                log_event(log, "namespace.secret_updated", name=name, namespace=namespace)
        except ApiError as exc:
            if exc.status != 409:  # 409: made meanwhile; the next check compares it
                raise ProvisionError(
                    f"cannot create Secret {name} in namespace {namespace}: {api_error_text(exc)}"
                ) from None

    def _read_secret(self, name: str, namespace: str, what: str) -> dict[str, Any] | None:
        try:
            return self.api.get(f"{_secrets(namespace)}/{segment(name)}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise ProvisionError(
                f"cannot {what} {name} in namespace {namespace}: {api_error_text(exc)}"
            ) from None
