"""Kopf handlers: each a line or two over ``reconcile``.

Run with ``kopf run -m streamgrid.operator.handlers --standalone`` (one
replica, Recreate strategy: no peering needed) or ``python -m
streamgrid.operator``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from ..core.logs import configure_logging
from .kubeapi import KubernetesStreamApi, load_kube_config
from .podspec import COMPONENT_LABEL, STREAM_LABEL
from .reconcile import reconcile
from .settings import GROUP, PLURAL, VERSION, OperatorSettings

_state: dict[str, Any] = {}


def _api() -> tuple[KubernetesStreamApi, OperatorSettings]:
    return _state["api"], _state["settings"]


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    ours = OperatorSettings()
    configure_logging("operator", ours.log_level)
    settings.posting.level = logging.WARNING  # k8s events for problems, not every handler
    settings.persistence.finalizer = "streamgrid.io/operator"
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    _state["settings"] = ours
    load_kube_config(ours.kubeconfig)  # for our client; Kopf logs in on its own
    _state["api"] = KubernetesStreamApi()


def _reconcile(namespace: str | None, name: str | None) -> None:
    if namespace and name:
        api, settings = _api()
        reconcile(api, settings, namespace, name)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@kopf.on.field(GROUP, VERSION, PLURAL, field="status.captureState")
def stream_changed(namespace: str | None, name: str, **_: Any) -> None:
    _reconcile(namespace, name)


@kopf.on.event("", "v1", "pods", labels={COMPONENT_LABEL: "capture"})
def pod_changed(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    _reconcile(namespace, labels.get(STREAM_LABEL))


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5)
async def periodic(namespace: str | None, name: str, stopped: Any, **_: Any) -> None:
    """Per stream: reconcile every few seconds, to catch anything an event
    missed and to expire stopped streams (TTL)."""
    interval = _api()[1].reconcile_interval_seconds
    while not stopped:
        await asyncio.sleep(interval)
        await asyncio.to_thread(_reconcile, namespace, name)
