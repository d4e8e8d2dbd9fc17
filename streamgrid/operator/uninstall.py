"""``python -m streamgrid.operator.uninstall``: Helm's pre-delete hook.

A capture pod is owned by its VideoStream, and the CRD outlives the release
(Helm never deletes CRDs), so a stream still running at ``helm uninstall``
would keep its pod forever. The hook deletes the namespace's streams while
the operator still runs; the garbage collector then takes their pods. A
stream whose finalizer the operator has not removed by the deadline has it
removed here, so an unhealthy operator cannot block the uninstall.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..core.logs import configure_logging, log_event

log = logging.getLogger("streamgrid.uninstall")


class StreamDeleter(Protocol):
    def list_streams(self, namespace: str) -> list[str]: ...
    def delete_stream(self, namespace: str, name: str) -> None: ...
    def clear_finalizers(self, namespace: str, name: str) -> None: ...


class UninstallSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMGRID_")

    namespace: str
    uninstall_timeout_seconds: float = Field(60.0, gt=0, le=600)


def delete_all_streams(
    api: StreamDeleter,
    namespace: str,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Deletes every stream in ``namespace``; returns those whose finalizers
    had to be cleared because the operator did not finish them in time."""
    names = api.list_streams(namespace)
    for name in names:
        api.delete_stream(namespace, name)
    log_event(log, "uninstall.deleting", namespace=namespace, streams=len(names))
    deadline = clock() + timeout
    left = api.list_streams(namespace)
    while left and clock() < deadline:
        sleep(0.5)
        left = api.list_streams(namespace)
    for name in left:
        log_event(log, "uninstall.finalizer_cleared", logging.WARNING, stream=name)
        api.clear_finalizers(namespace, name)
    log_event(log, "uninstall.done", namespace=namespace, forced=len(left))
    return left


def main() -> int:
    from ..core.kuberest import KubeClient, load_credentials
    from .kubeapi import KubernetesStreamApi

    settings = UninstallSettings()
    configure_logging("uninstall")
    api = KubernetesStreamApi(KubeClient(load_credentials()))
    delete_all_streams(api, settings.namespace, settings.uninstall_timeout_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
