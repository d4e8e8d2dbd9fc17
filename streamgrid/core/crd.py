"""The VideoStream resource's contract: the one place that names it.

The gateway, the operator, the capture pod and the kubectl plugin all build
and read VideoStreams through this module: the API group and kind, the
labels and annotations they share, the condition types, the capture
worker's exit codes (what a pod's exit means to the operator and to the
embedded supervisor), the names derived from a stream's, and typed models
of the spec and the status (pydantic, camelCase aliases as the API has
them). ``tests/unit/test_crd_contract.py`` holds the models against the CRD
in ``charts/streamgrid/crds`` both ways: a field the code can write is
declared there (a structural schema drops undeclared fields silently), and
a field declared there is one the code knows.

Objects read from the API server stay plain dicts where speed matters (the
operator's cache at 10,000 streams); the models check and name what is
written, and type what is read where a handler reads it.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

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


# -- typed models ----------------------------------------------------------------
class CrdModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields read from
    the API are ignored, never written back."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_api(self) -> dict[str, Any]:
        """As the API has it: camelCase, only the fields set (a None set is
        written: a merge patch's delete)."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class SecretRef(CrdModel):
    name: str


class Source(CrdModel):
    url: str
    credentials_secret_ref: SecretRef | None = None
    transport: Literal["tcp", "udp"] | None = None
    tls_verify: bool | None = None


class Grid(CrdModel):
    columns: int | None = None
    tile_width: int | None = None
    tile_height: int | None = None


class StreamSpec(CrdModel):
    source: Source
    capture_interval: float | None = None
    top_k: int | None = None
    grid: Grid | None = None
    state: Literal["Running", "Stopped"] | None = None
    ttl_seconds_after_stopped: int | None = None
    data_retention: Literal["Delete", "Retain"] | None = None


class Condition(CrdModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: str
    observed_generation: int | None = None


class StoreRef(CrdModel):
    url: str | None = None
    manifest: str | None = None


class GridRef(CrdModel):
    url: str | None = None
    name: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    composed_at: str | None = None


class StreamStatus(CrdModel):
    """Every status field, and who writes it: the capture pod its report
    (``captureState`` … ``grid``: kube_progress.status_of), the operator the
    rest (reconcile.plan)."""

    observed_generation: int | None = None
    state: str | None = None
    reason: str | None = None
    conditions: list[Condition] | None = None
    capture_state: str | None = None
    capture_reason: str | None = None
    store_error: str | None = None
    frames_captured: int | None = None
    kept: int | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    last_frame_at: str | None = None
    progress_interval_seconds: float | None = None
    pod_name: str | None = None
    restarts: int | None = None
    consecutive_exits: int | None = None
    next_attempt_at: str | None = None
    failed_inputs: str | None = None
    store: StoreRef | None = None
    grid: GridRef | None = None


class WritableStatus(StreamStatus):
    """A status patch as written: a field the model does not know is an error
    here, not a field the API server silently drops."""

    model_config = ConfigDict(extra="forbid")


def status_patch(fields: dict[str, Any]) -> dict[str, Any]:
    """A merge patch of the status from camelCase fields, checked against
    the contract (ValueError for an undeclared one), None values kept."""
    return WritableStatus.model_validate(fields).to_api()


def stream_spec(
    url: str,
    *,
    capture_interval: float,
    top_k: int,
    transport: str,
    tls_verify: bool,
    columns: int | None,
    tile_width: int,
    tile_height: int,
    credentials_secret: str | None,
) -> StreamSpec:
    """The spec of a stream started from a URL already free of credentials
    (core/urls.split_credentials), as the gateway and the plugin start one."""
    source = Source.model_validate({"url": url, "transport": transport})
    if not tls_verify:
        source.tls_verify = False
    if credentials_secret:
        source.credentials_secret_ref = SecretRef(name=credentials_secret)
    grid = Grid(tile_width=tile_width, tile_height=tile_height)
    if columns:
        grid.columns = columns
    return StreamSpec(
        source=source,
        capture_interval=capture_interval,
        top_k=top_k,
        grid=grid,
        state="Running",
    )


def stream_object(
    name: str,
    spec: StreamSpec,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A whole VideoStream to create."""
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec.to_api()}


def desired_state(stream: dict[str, Any]) -> str:
    return str((stream.get("spec") or {}).get("state") or "Running")


def status_of(stream: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = stream.get("status") or {}
    return found
