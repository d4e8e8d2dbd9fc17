"""Kopf handlers: each a line or two over ``reconcile``.

Run with ``kopf run -m streamgrid.operator.handlers --standalone`` (one
replica, Recreate strategy: no peering needed) or ``python -m
streamgrid.operator``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from ..core.logs import configure_logging
from ..core.store import store_error_text
from ..core.timestamps import parse_utc
from .kubeapi import KubernetesStreamApi, load_kube_config
from .podspec import COMPONENT_LABEL, STREAM_LABEL
from .provision import NamespaceProvisioner, report_reconcile_failure
from .reconcile import RETRY_ANNOTATION, reconcile
from .retention import StillRunning, finish_deleted_stream
from .settings import GROUP, PLURAL, VERSION, OperatorSettings

_state: dict[str, Any] = {}
RECONCILE_THREADS = 32


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
    _state["api"] = KubernetesStreamApi(provisioner=NamespaceProvisioner(ours))
    # The daemons' reconciles run in the loop's default executor: asyncio's
    # (cores + 4 threads) would queue them behind each other with many
    # streams, and a reconcile still queued at shutdown outlives its
    # daemon's cancellation timeout.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=RECONCILE_THREADS, thread_name_prefix="reconcile")
    )


# One reconcile (or the delete handler) at a time per stream: handlers run in
# threads, two plans made from the same status would count one lost pod twice,
# and a reconcile that read the stream before its deletion could make a pod
# after its data was deleted. Each lock with how many hold or wait on it:
# dropped only when none do (a lock dropped while waited on would let two in).
_stream_locks: dict[tuple[str, str], tuple[threading.Lock, list[int]]] = {}
_stream_locks_guard = threading.Lock()


@contextlib.contextmanager
def _stream_lock(namespace: str, name: str) -> Iterator[None]:
    key = (namespace, name)
    with _stream_locks_guard:
        lock, users = _stream_locks.setdefault(key, (threading.Lock(), [0]))
        users[0] += 1
    try:
        with lock:
            yield
    finally:
        with _stream_locks_guard:
            users[0] -= 1
            if users[0] == 0:
                del _stream_locks[key]


def _reconcile_alone(
    api: KubernetesStreamApi, settings: OperatorSettings, namespace: str, name: str
) -> None:
    with _stream_lock(namespace, name):
        reconcile(api, settings, namespace, name)


def _reconcile(namespace: str | None, name: str | None) -> None:
    if namespace and name:
        api, settings = _api()
        try:
            _reconcile_alone(api, settings, namespace, name)
        except ApiException as exc:
            # Kopf retries, but posts nothing a kubectl user sees: say it here,
            # and check the namespace's ServiceAccount, Role and Secret again.
            if api.provisioner is not None:
                api.provisioner.forget(namespace)
            report_reconcile_failure(api, namespace, name, exc)
            raise


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@kopf.on.field(GROUP, VERSION, PLURAL, field="status.captureState")
@kopf.on.field(GROUP, VERSION, PLURAL, field=("metadata", "annotations", RETRY_ANNOTATION))
def stream_changed(namespace: str | None, name: str, **_: Any) -> None:
    _reconcile(namespace, name)


@kopf.on.event("", "v1", "pods", labels={COMPONENT_LABEL: "capture"})
def pod_changed(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    _reconcile(namespace, labels.get(STREAM_LABEL))


@kopf.on.delete(GROUP, VERSION, PLURAL)
def stream_deleted(namespace: str | None, name: str, runtime: timedelta, **_: Any) -> None:
    """The finalizer stays until the stream's data is gone (or retained, or
    given up on: retention.py). Never waits inline: Kopf calls again.
    ``runtime``: Kopf's time since the first try (kept across restarts)."""
    if namespace:
        api, settings = _api()
        try:
            with _stream_lock(namespace, name):  # a reconcile under way finishes first
                finish_deleted_stream(
                    api, settings, namespace, name, elapsed=runtime.total_seconds()
                )
        except StillRunning as exc:
            raise kopf.TemporaryError(str(exc), delay=2) from None
        except Exception as exc:  # noqa: BLE001 - the store's or the API's: retry, said in an Event
            why = store_error_text(exc)
            raise kopf.TemporaryError(why, delay=settings.data_delete_retry_seconds) from None


def next_reconcile_in(
    status: Mapping[str, Any], interval: float, last_run: datetime, now: datetime
) -> float:
    """Seconds until the periodic reconcile is due: the interval after the
    last one, or sooner when a crashed pod's backoff (nextAttemptAt) ends."""
    due = last_run + timedelta(seconds=interval)
    retry_at = parse_utc(status.get("nextAttemptAt"))
    if retry_at is not None and retry_at > last_run:
        due = min(due, retry_at)
    return max(0.0, (due - now).total_seconds())


# Stopped daemons end at their next step; an in-flight reconcile (API calls,
# each with a timeout) is let finish rather than cancelled. Without a
# cancellation_backoff Kopf cancels a deleted stream's daemon at once.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_backoff=20, cancellation_timeout=10)
async def periodic(
    namespace: str | None,
    name: str,
    stopped: kopf.DaemonStopped,
    status: kopf.Status,
    **_: Any,
) -> None:
    """Per stream: reconcile every few seconds, to catch anything an event
    missed, to expire stopped streams (TTL) and to recreate a crashed pod
    when its backoff ends. ``status`` is Kopf's live view of the stream."""
    interval = _api()[1].reconcile_interval_seconds
    last_run = datetime.now(UTC)
    while not stopped:
        wait = next_reconcile_in(status, interval, last_run, datetime.now(UTC))
        if wait > 0:
            # Waiting on the flag, not asyncio.sleep: at shutdown the daemon
            # ends at once instead of being cancelled (and warned about).
            # Short steps: a nextAttemptAt written meanwhile is seen.
            await stopped.wait(min(wait, 1.0))
            continue
        last_run = datetime.now(UTC)
        with contextlib.suppress(ApiException):  # reported on the stream; next round retries
            await asyncio.to_thread(_reconcile, namespace, name)
