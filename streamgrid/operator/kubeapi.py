"""StreamApi over the official kubernetes client."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..core.crd import API_VERSION, COMPONENT_LABEL, FINALIZER, GROUP, KIND, PLURAL, VERSION
from ..core.urls import mask_secrets
from .podspec import CAPTURE
from .projections import slim_pod, slim_stream
from .provision import NamespaceProvisioner

log = logging.getLogger("streamgrid.operator")
EVENT_MEMORY = 4096  # Events whose count this operator remembers (the rest: read again)


def _json(response: Any) -> dict[str, Any]:
    """A raw answer (``_preload_content=False``) as a dict: the client's model
    classes cost more time and memory than the JSON they come from."""
    loaded: dict[str, Any] = json.loads(response.data)
    return loaded


# A LIST, page by page: each page's items (as the cache keeps them) and the
# collection's resourceVersion (every page is of that one snapshot).
Pages = Iterator[tuple[list[dict[str, Any]], int | None]]


def _pages(
    list_page: Callable[..., Any],
    keep: Callable[[dict[str, Any]], dict[str, Any]],
    limit: int = 500,
) -> Pages:
    """A LIST ``limit`` items at a time, each page handed on as ``keep``
    makes its items before the next is asked for: a relist of 10,000 pods
    never holds more than a page of whole objects (nor of their kept form)."""
    token: str | None = None
    version: int | None = None
    while True:
        page = _json(list_page(limit=limit, **({"_continue": token} if token else {})))
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
    except ApiException as exc:
        if exc.status != status:
            raise


class KubernetesStreamApi:
    def __init__(
        self,
        api_client: client.ApiClient | None = None,
        provisioner: NamespaceProvisioner | None = None,
    ) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.provisioner = provisioner  # None: namespaces are prepared by hand
        self._event_counts: OrderedDict[str, int] = OrderedDict()

    def prepare_namespace(self, namespace: str) -> None:
        if self.provisioner is not None:
            self.provisioner.ensure(namespace)

    def get_stream(self, namespace: str, name: str) -> dict[str, Any] | None:
        with _ignoring(404):
            stream: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
            return stream
        return None

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        with _ignoring(404):
            response = self.core.read_namespaced_pod(name, namespace, _preload_content=False)
            pod: dict[str, Any] = json.loads(response.data)
            return pod
        return None

    def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The created pod; None when it was already there (deterministic
        names make that success)."""
        with _ignoring(409):
            response = self.core.create_namespaced_pod(namespace, body, _preload_content=False)
            return _json(response)
        return None

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> dict[str, Any] | None:
        """The API server's answer: the pod as deletion left it; None when gone."""
        with _ignoring(404):
            response = self.core.delete_namespaced_pod(
                name,
                namespace,
                grace_period_seconds=grace_seconds,
                body=client.V1DeleteOptions(grace_period_seconds=grace_seconds),
                _preload_content=False,
            )
            return _json(response)
        return None

    def list_all_streams(self, namespace: str | None) -> Pages:
        """Every VideoStream (in ``namespace``, or everywhere), page by page."""
        if namespace:
            return _pages(
                lambda **kw: self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, _preload_content=False, **kw
                ),
                slim_stream,
            )
        return _pages(
            lambda **kw: self.custom.list_cluster_custom_object(
                GROUP, VERSION, PLURAL, _preload_content=False, **kw
            ),
            slim_stream,
        )

    def list_capture_pods(self, namespace: str | None) -> Pages:
        selector = f"{COMPONENT_LABEL}={CAPTURE}"
        if namespace:
            return _pages(
                lambda **kw: self.core.list_namespaced_pod(
                    namespace, label_selector=selector, _preload_content=False, **kw
                ),
                slim_pod,
            )
        return _pages(
            lambda **kw: self.core.list_pod_for_all_namespaces(
                label_selector=selector, _preload_content=False, **kw
            ),
            slim_pod,
        )

    def list_streams(self, namespace: str) -> list[str]:
        listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return [item["metadata"]["name"] for item in listing["items"]]

    def clear_finalizers(self, namespace: str, name: str) -> None:
        with _ignoring(404):
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"finalizers": None}}
            )

    def delete_stream(self, namespace: str, name: str) -> None:
        with _ignoring(404):
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def patch_stream_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The stream as the patch left it; None when it is gone."""
        with _ignoring(404):
            response = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status}, _preload_content=False
            )
            return _json(response)
        return None

    def secret_version(self, namespace: str, name: str) -> str | None:
        """Whether a stream's credentials Secret exists, and which version
        (a change retries a Failed stream); its data is not kept."""
        with _ignoring(404):
            secret = self.core.read_namespaced_secret(name, namespace)
            return str(secret.metadata.resource_version)
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
        now = datetime.now(UTC)
        try:
            count = self._event_counts.get(name)
            if count is None:
                try:
                    self.core.create_namespaced_event(
                        namespace, self._event_body(meta, name, type_, reason, text, now)
                    )
                    self._remember_event(name, 1)
                    return
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                existing = self.core.read_namespaced_event(name, namespace)
                count = int(existing.count or 1)
            self.core.patch_namespaced_event(
                name,
                namespace,
                {"count": count + 1, "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ")},
            )
            self._remember_event(name, count + 1)
        except ApiException as exc:  # events are best effort
            self._event_counts.pop(name, None)  # gone (expired): made anew next time
            log.warning("event not recorded: %s", exc.reason)

    def _remember_event(self, name: str, count: int) -> None:
        self._event_counts[name] = count
        self._event_counts.move_to_end(name)
        while len(self._event_counts) > EVENT_MEMORY:
            self._event_counts.popitem(last=False)

    @staticmethod
    def _event_body(
        meta: dict[str, Any], name: str, type_: str, reason: str, message: str, now: datetime
    ) -> Any:
        return client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=name, namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(
                api_version=API_VERSION,
                kind=KIND,
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta["uid"],
            ),
            type=type_,
            reason=reason,
            message=message,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="streamgrid-operator"),
        )

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
            response = self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                ops,
                _content_type="application/json-patch+json",
                _preload_content=False,
            )
            return _json(response)
        return None


class LeaseClient:
    """leader.LeaseApi over the kubernetes client: one Lease by name."""

    def __init__(self, namespace: str, name: str, api_client: client.ApiClient | None = None):
        self.namespace, self.name = namespace, name
        self.api = client.CoordinationV1Api(api_client)

    def read(self) -> dict[str, Any] | None:
        with _ignoring(404):
            return _json(
                self.api.read_namespaced_lease(self.name, self.namespace, _preload_content=False)
            )
        return None

    def create(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        body = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
        with _ignoring(409):
            return _json(
                self.api.create_namespaced_lease(self.namespace, body, _preload_content=False)
            )
        return None

    def replace(self, lease: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
        body = {"metadata": lease["metadata"], "spec": spec}  # its resourceVersion: a CAS
        with _ignoring(409):
            return _json(
                self.api.replace_namespaced_lease(
                    self.name, self.namespace, body, _preload_content=False
                )
            )
        return None
