from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from ..core.restarts import RestartPolicy
from ..core.settings import CommaList, CommonSettings
from . import capacity
from .auth import read_token_file
from .browsers import BrowserPolicy, normal_origin


class GatewaySettings(CommonSettings):
    """``streamgrid serve``; every field is ``STREAMGRID_<NAME>`` in the environment."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # Unset, the embedded runtime's cap is what this machine holds, measured
    # at start (gateway/capacity.py: its cores and memory); the cluster's 64.
    max_streams: int = Field(64, ge=1, le=100_000)
    # A stopped stream's record (and its grid) is kept this long, so a repeated
    # or late /stop/<id> returns the same grid; then its data is deleted.
    stopped_retention_seconds: float = Field(3600.0, ge=0)
    stop_timeout_seconds: float = Field(15.0, gt=0, le=300)  # SIGTERM, then SIGKILL
    # A worker that exits unexpectedly this many times in a row (no Active run
    # between) fails its stream; each restart waits initial, doubling up to max,
    # jittered (core/restarts.py: the operator's policy too).
    worker_restart_limit: int = Field(20, ge=0)
    worker_backoff_initial_seconds: float = Field(0.5, ge=0, le=3600)
    worker_backoff_max_seconds: float = Field(10.0, ge=0, le=86400)
    worker_log_level: str = "INFO"
    # fork: workers forked from a template process that imported the capture
    # worker once (gateway/forkserver.py: the imports shared, not paid per
    # stream); exec: each worker a new `python -m streamgrid.capture`.
    worker_start: Literal["fork", "exec"] = "fork"
    # The embedded runtime's stream records (gateway/state.py: streamgrid.db,
    # mode 0600, camera credentials included). Default: the store's directory
    # for a local store, else ./streamgrid-state.
    state_dir: Path | None = None
    # The cluster runtime: streams are VideoStream resources in this namespace.
    backend: Literal["local", "kube"] = "local"
    kube_namespace: str = "default"
    kubeconfig: str | None = None  # default: in-cluster, else ~/.kube/config
    kube_stop_timeout_seconds: float = Field(60.0, gt=0, le=600)
    # Authentication (gateway/auth.py): a static bearer token (or a file that
    # holds it, as a mounted Secret), and/or Kubernetes tokens checked by
    # TokenReview and authorized by SubjectAccessReview in kube_namespace.
    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    auth_kubernetes: bool = False
    auth_cache_seconds: float = Field(10.0, ge=0, le=600)
    # Serve a non-loopback address with no authentication at all.
    insecure: bool = False
    # Web pages (gateway/browsers.py). Host names the server answers to besides
    # IP literals, localhost and this machine's name ("*.example.com" patterns;
    # "*" for any, behind a proxy that checks them): anything else is a 421, so
    # a DNS-rebinding page cannot read the API. Origins (scheme://host[:port])
    # that may call it from a browser besides its own: cross-site writes from
    # any other are a 403, and CORS answers exactly these.
    allowed_hosts: CommaList = Field(default_factory=list)
    allowed_origins: CommaList = Field(default_factory=list)
    _max_streams_reason: str = PrivateAttr("")

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        return [normal_origin(origin) for origin in origins]  # ValueError: which one

    @model_validator(mode="after")
    def _cap_from_the_machine(self) -> GatewaySettings:
        if self.backend == "local" and "max_streams" not in self.model_fields_set:
            measured = capacity.measure()
            self.max_streams = measured.streams()
            self._max_streams_reason = measured.reason()
        return self

    def stream_limit(self) -> str:
        """The cap as /start's 429 says it: the number, and why when measured."""
        reason = self._max_streams_reason
        return f"{self.max_streams} ({reason})" if reason else str(self.max_streams)

    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy(
            self.worker_backoff_initial_seconds,
            self.worker_backoff_max_seconds,
            self.worker_restart_limit,
        )

    def browser_policy(self) -> BrowserPolicy:
        return BrowserPolicy.build(self.allowed_hosts, self.allowed_origins)

    def static_tokens(self) -> list[str]:
        """The static tokens configured, the file read now (start-up)."""
        tokens = [self.api_token.get_secret_value()] if self.api_token else []
        if self.api_token_file is not None:
            tokens.append(read_token_file(self.api_token_file))
        return [t for t in tokens if t]

    @property
    def authenticated(self) -> bool:
        return bool(self.api_token or self.api_token_file or self.auth_kubernetes)
