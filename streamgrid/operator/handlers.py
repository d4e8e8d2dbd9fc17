"""Kopf handlers: start-up, the watch events, the deletion finalizer. The
work is the Controller's (controller.py): a cache, a work queue, workers.

Run with ``python -m streamgrid.operator`` (one replica, Recreate strategy,
Kopf standalone: no peering needed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from ..core.crd import COMPONENT_LABEL, FINALIZER, GROUP, PLURAL, VERSION
from ..core.kubeclient import load_kube_config
from ..core.logs import configure_logging
from ..core.stores.base import StoreError, store_error_text
from .controller import Controller, stream_lock
from .kubeapi import KubernetesStreamApi
from .metrics import serve_metrics
from .provision import NamespaceProvisioner
from .retention import StillRunning, finish_deleted_stream
from .settings import OperatorSettings

_state: dict[str, Any] = {}


def _api() -> tuple[KubernetesStreamApi, OperatorSettings]:
    return _state["api"], _state["settings"]


def _controller() -> Controller:
    controller: Controller = _state["controller"]
    return controller


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    ours = OperatorSettings()
    configure_logging("operator", ours.log_level)
    settings.posting.level = logging.WARNING  # k8s events for problems, not every handler
    # Not a log line per watch event (tens a second in a large fleet).
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings.persistence.finalizer = FINALIZER
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    _state["settings"] = ours
    load_kube_config(ours.kubeconfig)  # for our client; Kopf logs in on its own
    api = KubernetesStreamApi(provisioner=NamespaceProvisioner(ours))
    _state["api"] = api
    on_reconcile = None
    if ours.metrics_port is not None:
        on_reconcile = serve_metrics(ours.metrics_port, ours.metrics_host).reconciled
    controller = Controller(api, ours, workers=ours.reconcile_workers, on_reconcile=on_reconcile)
    # Streams and pods listed before any reconcile; Kopf's watches keep it current.
    await asyncio.to_thread(controller.sync)
    controller.start()
    _state["controller"] = controller


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if "controller" in _state:
        await asyncio.to_thread(_controller().stop)


# Watch events only feed the cache and the work queue. (Kopf still writes its
# finalizer and, for the delete handler's sake, a last-handled-configuration
# annotation at creation and at each spec change: not per event.)
@kopf.on.event(GROUP, VERSION, PLURAL)
async def stream_event(event: Mapping[str, Any], **_: Any) -> None:
    if "controller" in _state:
        _controller().stream_event(event.get("type"), event["object"])


@kopf.on.event("", "v1", "pods", labels={COMPONENT_LABEL: "capture"})
async def pod_event(event: Mapping[str, Any], **_: Any) -> None:
    if "controller" in _state:
        _controller().pod_event(event.get("type"), event["object"])


@kopf.on.delete(GROUP, VERSION, PLURAL)
def stream_deleted(namespace: str | None, name: str, runtime: timedelta, **_: Any) -> None:
    """The finalizer stays until the stream's data is gone (or retained, or
    given up on: retention.py). Never waits inline: Kopf calls again.
    ``runtime``: Kopf's time since the first try (kept across restarts)."""
    if namespace:
        api, settings = _api()
        try:
            with stream_lock(namespace, name):  # a reconcile under way finishes first
                finish_deleted_stream(
                    api, settings, namespace, name, elapsed=runtime.total_seconds()
                )
        except StillRunning as exc:
            raise kopf.TemporaryError(str(exc), delay=2) from None
        except (StoreError, ApiException, urllib3.exceptions.HTTPError) as exc:
            # The store's or the API server's (no answer: urllib3's): retry, said in an Event.
            why = store_error_text(exc)
            raise kopf.TemporaryError(why, delay=settings.data_delete_retry_seconds) from None
