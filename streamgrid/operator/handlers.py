"""Kopf handlers: start-up, and the watch events. The work is the
Controller's (controller.py): a cache, a work queue, workers, the deletion
finalizer; whether this replica does it, the Lease's (leader.py).

Run with ``python -m streamgrid.operator``: as many replicas as wanted (the
chart runs two). Every replica watches and keeps its cache warm; only the
holder of the Lease reconciles or writes anything. Kopf here only delivers
watch events: no Kopf handler writes to a stream (no Kopf finalizer, no
annotations), so a standby touches nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import kopf

from ..core.crd import COMPONENT_LABEL, GROUP, PLURAL, VERSION
from ..core.kuberest import Credentials, KubeClient, load_credentials
from ..core.logs import configure_logging, log_event
from .controller import Controller
from .kubeapi import KubernetesStreamApi, LeaseClient
from .leader import LeaderElector, Timing
from .metrics import OperatorMetrics, serve_metrics
from .provision import NamespaceProvisioner
from .settings import OperatorSettings

log = logging.getLogger("streamgrid.operator")
_state: dict[str, Any] = {}


def _controller() -> Controller:
    controller: Controller = _state["controller"]
    return controller


def identity() -> str:
    """This replica's name in the Lease: its pod's, and a nonce (a restarted
    container is a new holder, never the old one back)."""
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{host}-{uuid.uuid4().hex[:8]}"


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    ours = OperatorSettings()
    configure_logging("operator", ours.log_level)
    settings.posting.level = logging.WARNING  # k8s events for problems, not every handler
    # Not a log line per watch event (tens a second in a large fleet).
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    # Kopf's first LIST a page at a time (unpaged, 10,000 pods are one answer
    # of hundreds of MB in the heap at once), and a per-object worker gone
    # soon after its event (each keeps the whole raw object while it idles).
    settings.watching.chunk_size = 500
    settings.queueing.idle_timeout = 0.5
    # One set of credentials for our client and Kopf's (login below).
    credentials = await asyncio.to_thread(load_credentials, ours.kubeconfig)
    _state["credentials"] = credentials
    client = KubeClient(credentials, timeout=settings.networking.request_timeout)
    api = KubernetesStreamApi(client, provisioner=NamespaceProvisioner(ours, client))
    metrics = OperatorMetrics()
    if ours.metrics_port is not None:
        serve_metrics(ours.metrics_port, ours.metrics_host, metrics)
    elector: LeaderElector | None = None
    if ours.leader_election:
        elector = LeaderElector(
            LeaseClient(client, ours.lease_namespace(), ours.leader_election_lease),
            identity(),
            Timing(
                ours.leader_election_lease_seconds,
                ours.leader_election_renew_deadline_seconds,
                ours.leader_election_retry_seconds,
            ),
        )
    controller = Controller(
        api,
        ours,
        workers=ours.reconcile_workers,
        on_reconcile=metrics.reconciled,
        is_leader=elector.is_leader if elector is not None else None,
        metrics=metrics,
    )
    metrics.watch_streams(controller.stream_states, controller.leading.is_set)
    metrics.leading(elector is None)
    # Streams and pods listed before any reconcile; Kopf's watches keep it current.
    await asyncio.to_thread(controller.sync)
    controller.start()
    _state["controller"] = controller
    if elector is not None:
        loop = asyncio.get_running_loop()

        def changed(leading: bool) -> None:
            metrics.leading(leading)
            # Off the elector's thread: a new leader relists before it works.
            loop.call_soon_threadsafe(lambda: loop.run_in_executor(None, controller.lead, leading))

        elector.on_change = changed
        _state["elector"] = elector.start()
        log_event(log, "leader.candidate", identity=elector.identity)


@kopf.on.login()
async def login(**_: Any) -> kopf.ConnectionInfo:
    """Kopf's credentials: ours (after a 401 or an expiry, asked again)."""
    credentials: Credentials | None = _state.get("credentials")
    if credentials is None:  # before start-up's
        credentials = await asyncio.to_thread(load_credentials, OperatorSettings().kubeconfig)
    elif _state.get("kopf_logged_in"):  # a 401 or an expiry: an exec plugin runs again
        credentials = await asyncio.to_thread(credentials.refreshed)
    _state["credentials"], _state["kopf_logged_in"] = credentials, True
    return connection_info(credentials)


def connection_info(credentials: Credentials) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(
        server=credentials.server,
        ca_path=credentials.ca_file,
        ca_data=credentials.ca_pem,
        insecure=credentials.insecure,
        token=credentials.bearer(),
        certificate_path=credentials.cert_file,
        certificate_data=credentials.cert_pem,
        private_key_path=credentials.key_file,
        private_key_data=credentials.key_pem,
        default_namespace=credentials.namespace,
        expiration=credentials.expires_at,
    )


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if "elector" in _state:
        await asyncio.to_thread(_state["elector"].stop)  # released: the standby takes over
    if "controller" in _state:
        await asyncio.to_thread(_controller().stop)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def stream_event(event: Mapping[str, Any], **_: Any) -> None:
    if "controller" in _state:
        _controller().stream_event(event.get("type"), event["object"])


@kopf.on.event("", "v1", "pods", labels={COMPONENT_LABEL: "capture"})
async def pod_event(event: Mapping[str, Any], **_: Any) -> None:
    if "controller" in _state:
        _controller().pod_event(event.get("type"), event["object"])
