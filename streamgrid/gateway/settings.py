from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..core.settings import CommonSettings


class GatewaySettings(CommonSettings):
    """``streamgrid serve``; every field is ``STREAMGRID_<NAME>`` in the environment."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    max_streams: int = Field(64, ge=1, le=10_000)
    # A stopped stream's record (and its grid) is kept this long, so a repeated
    # or late /stop/<id> returns the same grid; then its data is deleted.
    stopped_retention_seconds: float = Field(3600.0, ge=0)
    stop_timeout_seconds: float = Field(15.0, gt=0, le=300)  # SIGTERM, then SIGKILL
    worker_restart_limit: int = Field(20, ge=0)  # unexpected worker exits per stream
    worker_log_level: str = "INFO"
    # The cluster runtime: streams are VideoStream resources in this namespace.
    backend: Literal["local", "kube"] = "local"
    kube_namespace: str = "default"
    kubeconfig: str | None = None  # default: in-cluster, else ~/.kube/config
    kube_stop_timeout_seconds: float = Field(60.0, gt=0, le=600)
