"""StreamApi over the official kubernetes client."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..core.crd import API_VERSION, COMPONENT_LABEL, GROUP, KIND, PLURAL, VERSION
from ..core.urls import mask_secrets
from .podspec import CAPTURE
from .projections import slim_pod, slim_stream
from .provision import NamespaceProvisioner

log = logging.getLogger("streamgrid.operator")


def _json(response: Any) -> dict[str, Any]:
    """A raw answer (``_preload_content=False``) as a dict: the client's model
    classes cost more time and memory than the JSON they come from."""
    loaded: dict[str, Any] = json.loads(response.data)
    return loaded


Listing = tuple[list[dict[str, Any]], int | None]


def _pages(
    list_page: Callable[..., Any],
    keep: Callable[[dict[str, Any]], dict[str, Any]],
    limit: int = 500,
) -> Listing:
    """All items of a LIST, ``limit`` at a time (no one huge answer), each as
    ``keep`` makes it (what the cache holds: 10,000 whole pods would be
    hundreds of MB at once), and the collection's resourceVersion (every page
    is of that one snapshot)."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    version: int | None = None
    while True:
        page = _json(list_page(limit=limit, **({"_continue": token} if token else {})))
        items.extend(keep(item) for item in page.get("items") or [])
        meta = page.get("metadata") or {}
        if version is None:
            with contextlib.suppress(TypeError, ValueError):
                version = int(str(meta.get("resourceVersion")))
        token = meta.get("continue")
        if not token:
            return items, version


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

    def list_all_streams(self, namespace: str | None) -> Listing:
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

    def list_capture_pods(self, namespace: str | None) -> Listing:
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
        meta = stream["metadata"]
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{meta['name']}.", namespace=meta["namespace"]
            ),
            involved_object=client.V1ObjectReference(
                api_version=API_VERSION,
                kind=KIND,
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta["uid"],
            ),
            type=type_,
            reason=reason,
            message=mask_secrets(message)[:1024],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="streamgrid-operator"),
        )
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as exc:  # events are best effort
            log.warning("event not recorded: %s", exc.reason)
