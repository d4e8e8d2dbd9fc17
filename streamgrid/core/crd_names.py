"""The plain part of the VideoStream contract: the API group and kind, the
labels and annotations the components share, the condition types, the
capture worker's exit codes and the names derived from a stream's.

Plain data, no pydantic, so that a capture pod imports it without the ~9 MB
that pydantic costs a process. ``core/crd.py`` is the whole contract (this,
re-exported, and the typed models of the spec and the status): everything
but the capture worker imports that.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any

# What core/crd.py re-exports: all of it.
__all__ = [
    "API_VERSION",
    "APP_NAME",
    "CAPTURE_COMPONENT",
    "CAPTURE_NAMESPACE_ENABLED",
    "CAPTURE_NAMESPACE_LABEL",
    "COMPONENT_LABEL",
    "DISPLAY_URL_ANNOTATION",
    "FINALIZER",
    "GROUP",
    "KIND",
    "MANAGED_BY_LABEL",
    "NAME_LABEL",
    "PAUSED_ANNOTATION",
    "PLURAL",
    "PROVISIONED_LABEL",
    "RETRY_ANNOTATION",
    "SHORT_NAME",
    "SKIP_DATA_DELETE_ANNOTATION",
    "SPEC_HASH_ANNOTATION",
    "STREAM_LABEL",
    "TEMPLATE_HASH_ANNOTATION",
    "VERSION",
    "ConditionType",
    "WorkerExit",
    "capture_pod_name",
    "credentials_secret_name",
    "desired_state",
    "owner_reference",
    "status_of",
    "store_url_for",
]

GROUP, VERSION, KIND, PLURAL = "streamgrid.io", "v1alpha1", "VideoStream", "videostreams"
API_VERSION = f"{GROUP}/{VERSION}"
SHORT_NAME = "vstream"  # not "vs": Istio's VirtualService has it

# -- labels -------------------------------------------------------------------
NAME_LABEL, APP_NAME = "app.kubernetes.io/name", "streamgrid"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COMPONENT_LABEL, CAPTURE_COMPONENT = "app.kubernetes.io/component", "capture"
STREAM_LABEL = f"{GROUP}/stream"  # a capture pod's stream
PROVISIONED_LABEL = f"{GROUP}/provisioned-by"  # what the operator made in a namespace
# A namespace an admin opened to capture pods (they get the store's credentials).
CAPTURE_NAMESPACE_LABEL, CAPTURE_NAMESPACE_ENABLED = f"{GROUP}/capture", "enabled"

# -- annotations ---------------------------------------------------------------
DISPLAY_URL_ANNOTATION = f"{GROUP}/display-url"  # the source URL, credentials masked
SPEC_HASH_ANNOTATION = f"{GROUP}/spec-hash"  # on a capture pod: the spec it runs
# On a capture pod: the pod template it was made from (the operator's settings:
# image, resources, ...); a change is rolled out a few pods at a time.
TEMPLATE_HASH_ANNOTATION = f"{GROUP}/template-hash"
PAUSED_ANNOTATION = f"{GROUP}/paused"  # "true": the operator leaves the stream as it is
RETRY_ANNOTATION = f"{GROUP}/retry"  # any new value retries a Failed stream
SKIP_DATA_DELETE_ANNOTATION = f"{GROUP}/skip-data-delete"  # "true": delete, keep the data
FINALIZER = f"{GROUP}/operator"


class ConditionType(StrEnum):
    READY = "Ready"
    CONNECTED = "Connected"
    STOPPED = "Stopped"
    SPEC_APPLIED = "SpecApplied"
    CREDENTIALS_FOUND = "CredentialsFound"
    # kstatus (Flux, kpt, Argo CD's kstatus checks): working toward the spec;
    # stuck until something changes.
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    RECONCILIATION_PAUSED = "ReconciliationPaused"


class WorkerExit(IntEnum):
    """The capture worker's exit codes (a pod's container, an embedded child)."""

    STOPPED = 0  # a graceful stop: frames and the final manifest flushed
    CRASHED = 1  # anything unexpected: restart it
    BAD_SETTINGS = 2  # its settings are invalid: a restart cannot help
    FAILED = 3  # the camera refused the stream for good


# -- names derived from a stream's ----------------------------------------------
def capture_pod_name(stream: str) -> str:
    """Deterministic, so a second create is a harmless 409."""
    return f"{stream}-capture"[:253]


def credentials_secret_name(stream: str) -> str:
    """The Secret the gateway and the plugin put a URL's credentials in."""
    return f"{stream}-credentials"


def store_url_for(store_url: str, namespace: str) -> str:
    """Where a namespace's streams keep their data: one prefix per namespace,
    the stream's name its prefix below that (capture pods write there, the
    gateway and the plugin read there)."""
    return f"{store_url.rstrip('/')}/{namespace}"


def owner_reference(name: str, uid: str, controller: bool = False) -> dict[str, Any]:
    reference: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
    }
    if controller:
        reference.update(controller=True, blockOwnerDeletion=True)
    return reference


def desired_state(stream: dict[str, Any]) -> str:
    return str((stream.get("spec") or {}).get("state") or "Running")


def status_of(stream: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = stream.get("status") or {}
    return found
