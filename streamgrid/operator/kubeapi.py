"""StreamApi over the Kubernetes API (core/kuberest.py): plain JSON in and out."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from ..core.crd import API_VERSION, COMPONENT_LABEL, FINALIZER, GROUP, KIND, PLURAL, VERSION
from ..core.kuberest import ApiError, KubeClient, segment
from ..core.urls import mask_secrets
from .podspec import CAPTURE
from .projections import slim_pod, slim_stream
from .provision import NamespaceProvisioner

log = logging.getLogger("streamgrid.operator")
EVENT_MEMORY = 4096  # Events whose count this operator remembers (the rest: read again)
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# A LIST, page by page: each page's items (as the cache keeps them) and the
# collection's resourceVersion (every page is of that one snapshot).
Pages = Iterator[tuple[list[dict[str, Any]], int | None]]


def _pages(
    api: KubeClient,
    path: str,
    keep: Callable[[dict[str, Any]], dict[str, Any]],
    query: dict[str, object] | None = None,
    limit: int = 500,
) -> Pages:
    """A LIST ``limit`` items at a time, each page handed on as ``keep``
    makes its items before the next is asked for: a relist of 10,000 pods
    never holds more than a page of whole objects (nor of their kept form)."""
    token: str | None = None
    version: int | None = None
    while True:
        page = api.get(path, {**(query or {}), "limit": limit, "continue": token})
        meta = page.get("metadata") or {}
        if version is None:
            with contextlib.suppress(TypeError, ValueError):
                version = int(str(meta.get("resourceVersion")))
        token = meta.get("continue")
        items = [keep(item) for item in page.get("items") or []]
        del page
        yield items, version
        if not token:
            return


@contextlib.contextmanager
def _ignoring(status: int) -> Iterator[None]:
    """An API error with this status is an expected outcome (gone, already there)."""
    try:
        yield
    except ApiError as exc:
        if exc.status != status:
            raise


def streams_path(namespace: str | None, name: str | None = None) -> str:
    base = f"/apis/{GROUP}/{VERSION}"
    if namespace is None:
        return f"{base}/{PLURAL}"
    path = f"{base}/namespaces/{segment(namespace)}/{PLURAL}"
    return f"{path}/{segment(name)}" if name is not None else path


def core_path(kind: str, namespace: str | None, name: str | None = None) -> str:
    """/api/v1's ``kind`` (plural: pods, events, secrets ...) in a namespace, or everywhere."""
    path = f"/api/v1/namespaces/{segment(namespace)}/{kind}" if namespace else f"/api/v1/{kind}"
    return f"{path}/{segment(name)}" if name is not None else path


class KubernetesStreamApi:
    def __init__(self, api: KubeClient, provisioner: NamespaceProvisioner | None = None) -> None:
        self.api = api
        self.provisioner = provisioner  # None: namespaces are prepared by hand
        self._event_counts: OrderedDict[str, int] = OrderedDict()

    def prepare_namespace(self, namespace: str) -> None:
        if self.provisioner is not None:
            self.provisioner.ensure(namespace)

    def get_stream(self, namespace: str, name: str) -> dict[str, Any] | None:
        with _ignoring(404):
            return self.api.get(streams_path(namespace, name))
        return None

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        with _ignoring(404):
            return self.api.get(core_path("pods", namespace, name))
        return None

    def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The created pod; None when it was already there (deterministic
        names make that success)."""
        with _ignoring(409):
            return self.api.request("POST", core_path("pods", namespace), body=body)
        return None

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> dict[str, Any] | None:
        """The API server's answer: the pod as deletion left it; None when gone."""
        with _ignoring(404):
            return self.api.request(
                "DELETE",
                core_path("pods", namespace, name),
                body={
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": grace_seconds,
                },
            )
        return None

    def list_all_streams(self, namespace: str | None) -> Pages:
        """Every VideoStream (in ``namespace``, or everywhere), page by page."""
        return _pages(self.api, streams_path(namespace or None), slim_stream)

    def list_capture_pods(self, namespace: str | None) -> Pages:
        selector = f"{COMPONENT_LABEL}={CAPTURE}"
        return _pages(
            self.api, core_path("pods", namespace or None), slim_pod, {"labelSelector": selector}
        )

    def list_streams(self, namespace: str) -> list[str]:
        return [
            item["metadata"]["name"]
            for items, _ in _pages(self.api, streams_path(namespace), slim_stream)
            for item in items
        ]

    def clear_finalizers(self, namespace: str, name: str) -> None:
        with _ignoring(404):
            self.api.request(
                "PATCH",
                streams_path(namespace, name),
                body={"metadata": {"finalizers": None}},
                content_type=MERGE_PATCH,
            )

    def delete_stream(self, namespace: str, name: str) -> None:
        with _ignoring(404):
            self.api.request("DELETE", streams_path(namespace, name))

    def patch_stream_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The stream as the patch left it; None when it is gone."""
        with _ignoring(404):
            return self.api.request(
                "PATCH",
                streams_path(namespace, name) + "/status",
                body={"status": status},
                content_type=MERGE_PATCH,
            )
        return None

    def secret_version(self, namespace: str, name: str) -> str | None:
        """Whether a stream's credentials Secret exists, and which version
        (a change retries a Failed stream); its data is not kept."""
        with _ignoring(404):
            secret = self.api.get(core_path("secrets", namespace, name))
            return str(secret["metadata"]["resourceVersion"])
        return None

    def event(self, stream: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event on the stream, aggregated as Kubernetes' own recorder does:
        the same type, reason and message on the same object again is one
        Event with its count and lastTimestamp moved on (its name is made
        from them, so a second operator, or this one after a restart, finds
        it too), never a second Event."""
        meta = stream["metadata"]
        namespace, text = meta["namespace"], mask_secrets(message)[:1024]
        key = f"{meta.get('uid', '')}/{type_}/{reason}/{text}"
        name = f"{meta['name']}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        events = core_path("events", namespace)
        try:
            count = self._event_counts.get(name)
            if count is None:
                try:
                    self.api.request(
                        "POST", events, body=self._event_body(meta, name, type_, reason, text, now)
                    )
                    self._remember_event(name, 1)
                    return
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                existing = self.api.get(core_path("events", namespace, name))
                count = int(existing.get("count") or 1)
            self.api.request(
                "PATCH",
                core_path("events", namespace, name),
                body={"count": count + 1, "lastTimestamp": now},
                content_type=MERGE_PATCH,
            )
            self._remember_event(name, count + 1)
        except ApiError as exc:  # events are best effort
            self._event_counts.pop(name, None)  # gone (expired): made anew next time
            log.warning("event not recorded: %s", exc.reason)

    def _remember_event(self, name: str, count: int) -> None:
        self._event_counts[name] = count
        self._event_counts.move_to_end(name)
        while len(self._event_counts) > EVENT_MEMORY:
            self._event_counts.popitem(last=False)

    @staticmethod
    def _event_body(
        meta: dict[str, Any], name: str, type_: str, reason: str, message: str, now: str
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": "streamgrid-operator"},
        }

    # -- the finalizer (controller.py; Kopf's finalizer name, kept) -------------
    def add_finalizer(self, stream: dict[str, Any]) -> dict[str, Any] | None:
        """The stream with our finalizer added (a JSON patch: others' stay)."""
        meta = stream["metadata"]
        finalizers = meta.get("finalizers")
        ops: list[dict[str, Any]] = (
            [{"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}]
            if finalizers
            else [{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]
        )
        return self._patch_stream_json(meta["namespace"], meta["name"], ops)

    def remove_finalizer(self, stream: dict[str, Any]) -> dict[str, Any] | None:
        """The stream without our finalizer; a test op makes sure the entry
        removed is ours, whatever else changed in the list."""
        meta = stream["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER not in finalizers:
            return stream
        at = finalizers.index(FINALIZER)
        ops = [
            {"op": "test", "path": f"/metadata/finalizers/{at}", "value": FINALIZER},
            {"op": "remove", "path": f"/metadata/finalizers/{at}"},
        ]
        return self._patch_stream_json(meta["namespace"], meta["name"], ops)

    def _patch_stream_json(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        with _ignoring(404):
            return self.api.request(
                "PATCH", streams_path(namespace, name), body=ops, content_type=JSON_PATCH
            )
        return None


class LeaseClient:
    """leader.LeaseApi over the API: one Lease by name."""

    def __init__(self, api: KubeClient, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.leases = f"/apis/coordination.k8s.io/v1/namespaces/{segment(namespace)}/leases"

    def read(self) -> dict[str, Any] | None:
        with _ignoring(404):
            return self.api.get(f"{self.leases}/{segment(self.name)}")
        return None

    def create(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        body = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
        with _ignoring(409):
            return self.api.request("POST", self.leases, body=body)
        return None

    def replace(self, lease: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
        body = {"metadata": lease["metadata"], "spec": spec}  # its resourceVersion: a CAS
        with _ignoring(409):
            return self.api.request("PUT", f"{self.leases}/{segment(self.name)}", body=body)
        return None
