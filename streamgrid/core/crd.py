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

The plain part (names, labels, exit codes ...) lives in ``core/crd_names.py``
and is re-exported here: the capture worker imports that alone, without
pydantic.

Objects read from the API server stay plain dicts where speed matters (the
operator's cache at 10,000 streams); the models check and name what is
written, and type what is read where a handler reads it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# The plain part of the contract, re-exported whole (crd_names.__all__).
from .crd_names import *  # noqa: F403
from .crd_names import API_VERSION, KIND


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
