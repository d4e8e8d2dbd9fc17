"""The capture worker's settings: each field is ``STREAMGRID_<NAME>`` in the
environment (names are case-insensitive) or a keyword argument, which wins.

Plain Python, not pydantic-settings like the other components' settings
(core/settings.py): pydantic costs a process about 12 MB of private memory,
half of what a whole capture pod may hold. The rules are the ones pydantic
applied to the same variables, with its wording; the fields the worker shares
with CommonSettings keep its names and defaults (tests/unit/test_capture_settings.py
holds them together). A value that breaks a rule is a SettingsError that names
the field and the rule, never the value (it may be a secret).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import quote

from ..core.geometry import MAX_CELLS, MAX_TILE, MIN_TILE, GridGeometry
from ..core.models import (
    INTERVAL_DEFAULT,
    INTERVAL_MAX,
    INTERVAL_MIN,
    STREAM_ID_RE,
    TOP_K_DEFAULT,
    TOP_K_MAX,
    TOP_K_MIN,
)
from ..core.sources import DEFAULT_DENY_CIDRS, SourcePolicy, parse_networks
from ..core.stores.factory import open_object_store
from ..core.stores.frames import FrameStore
from .sampling import DecodeMode

# The worker's packet reader (capture/source.py): our RTSP client with its C
# receive loop, FFmpeg's RTSP driven from C, PyAV's demux, or the first of
# these that can read the camera.
Demuxer = Literal["auto", "rtp", "pyav"]
ENV_PREFIX = "STREAMGRID_"
T = TypeVar("T")
Parse = Callable[[object], T]


class SettingsError(ValueError):
    """Settings that break their rules: ``problems`` is (field, rule) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {rule}" for name, rule in problems))


class Secret:
    """A value that repr() and str() do not show: ``get_secret_value()`` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# -- the rules: each turns a raw value (a string from the environment, or
# whatever a caller passed) into the field's value, or raises ValueError with
# pydantic's wording --------------------------------------------------------


def _bounded(value: float, ge: float | None, gt: float | None, le: float | None) -> None:
    if ge is not None and not value >= ge:
        raise ValueError(f"Input should be greater than or equal to {ge:g}")
    if gt is not None and not value > gt:
        raise ValueError(f"Input should be greater than {gt:g}")
    if le is not None and not value <= le:
        raise ValueError(f"Input should be less than or equal to {le:g}")


def number(
    ge: float | None = None, gt: float | None = None, le: float | None = None
) -> Parse[float]:
    def parse(raw: object) -> float:
        try:
            value = float(raw.strip() if isinstance(raw, str) else cast(Any, raw))
        except (TypeError, ValueError):
            raise ValueError("Input should be a valid number") from None
        if isinstance(raw, bool) or math.isnan(value):
            raise ValueError("Input should be a valid number")
        _bounded(value, ge, gt, le)
        return value

    return parse


def integer(ge: int | None = None, le: int | None = None) -> Parse[int]:
    def parse(raw: object) -> int:
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw):
            raw = int(raw)
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError("Input should be a valid integer")
        _bounded(raw, ge, None, le)
        return raw

    return parse


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower() if isinstance(raw, str | int) else ""
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError("Input should be a valid boolean")


def text(pattern: re.Pattern[str] | None = None) -> Parse[str]:
    def parse(raw: object) -> str:
        if not isinstance(raw, str):
            raise ValueError("Input should be a valid string")
        if pattern is not None and not pattern.search(raw):
            raise ValueError(f"String should match pattern '{pattern.pattern}'")
        return raw

    return parse


def _quoted(choices: tuple[str, ...]) -> str:
    named = [f"'{c}'" for c in choices]
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"


def choice(*choices: str) -> Parse[Any]:
    """One of ``choices`` (Any: the field's annotation says which Literal)."""

    def parse(raw: object) -> str:
        if raw not in choices:
            raise ValueError(f"Input should be {_quoted(choices)}")
        return raw

    return parse


E = TypeVar("E", bound=Enum)


def member(kind: type[E]) -> Parse[E]:
    values = tuple(str(m.value) for m in kind)

    def parse(raw: object) -> E:
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"Input should be {_quoted(values)}") from None

    return parse


def secret(raw: object) -> Secret:
    if isinstance(raw, Secret):
        return raw
    return Secret(text()(raw))


def path(raw: object) -> Path:
    if isinstance(raw, Path):
        return raw
    return Path(text()(raw))


def networks(raw: object) -> list[str]:
    """Networks (10.0.0.0/8, or one address), comma-separated in the environment."""
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
        raise ValueError("Input should be a valid list")
    try:
        return [str(network) for network in parse_networks(raw)]
    except ValueError as exc:
        raise ValueError(f"Value error, {exc}") from None


def optional(parse: Parse[T]) -> Parse[T | None]:
    """None, or unset: an empty string is no value."""

    def parse_optional(raw: object) -> T | None:
        return None if raw is None or raw == "" else parse(raw)

    return parse_optional


def setting(
    parse: Parse[T],
    default: Any = MISSING,
    *,
    factory: Callable[[], T] | None = None,
    env: str | None = None,
) -> T:
    """A field: its rule, its default (none: required), its variable when it
    is not STREAMGRID_<NAME>."""
    metadata = {"parse": parse, "env": env}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return cast(T, field(default=default, metadata=metadata))


def _load(target: object, values: Mapping[str, object]) -> None:
    known = {f.name for f in fields(cast(Any, target))}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(unknown)}")
    environment = {name.lower(): value for name, value in os.environ.items()}
    problems: list[tuple[str, str]] = []
    for item in fields(cast(Any, target)):
        variable = (item.metadata["env"] or f"{ENV_PREFIX}{item.name}").lower()
        if item.name in values:
            raw = values[item.name]
        elif variable in environment:
            raw = environment[variable]
        elif item.default_factory is not MISSING:
            setattr(target, item.name, item.default_factory())
            continue
        elif item.default is not MISSING:
            setattr(target, item.name, item.default)
            continue
        else:
            problems.append((item.name, "Field required"))
            continue
        try:
            setattr(target, item.name, item.metadata["parse"](raw))
        except ValueError as exc:
            problems.append((item.name, str(exc)))
    if problems:
        raise SettingsError(problems)


@dataclass(init=False, repr=False, eq=False, kw_only=True)
class CaptureSettings:
    """One stream's worker. ``CaptureSettings(**values)`` reads the rest from
    the environment; raises SettingsError."""

    # -- shared with every component (core/settings.py CommonSettings) --------
    store_url: str = setting(text(), "./streamgrid-data")
    s3_endpoint_url: str | None = setting(optional(text()), None)
    s3_access_key_id: str | None = setting(optional(text()), None)
    s3_secret_access_key: Secret | None = setting(optional(secret), None)
    s3_region: str = setting(text(), "us-east-1")
    log_level: str = setting(text(), "INFO")
    # Where cameras may be (core/sources.py): an address in a denied network is
    # refused; with an allow list, so is one in none of its networks. Setting
    # source_deny_cidrs replaces the built-in list (unspecified, link-local,
    # multicast, broadcast): keep those in yours.
    source_allow_cidrs: list[str] = setting(networks, factory=list)
    source_deny_cidrs: list[str] = setting(networks, factory=lambda: list(DEFAULT_DENY_CIDRS))
    source_deny_loopback: bool = setting(boolean, False)  # the cluster sets it
    # Set by Kubernetes in every pod: the API server's ClusterIP, never a camera.
    kubernetes_service_host: str | None = setting(
        optional(text()), None, env="KUBERNETES_SERVICE_HOST"
    )

    # -- the worker's own ---------------------------------------------------
    # Every name the CRD accepts (an RFC 1123 label) matches; so does the gateway's hex.
    stream_id: str = setting(text(STREAM_ID_RE))
    source_url: Secret = setting(secret)
    capture_interval: float = setting(number(INTERVAL_MIN, le=INTERVAL_MAX), INTERVAL_DEFAULT)
    top_k: int = setting(integer(TOP_K_MIN, TOP_K_MAX), TOP_K_DEFAULT)
    rtsp_transport: Literal["tcp", "udp"] = setting(choice("tcp", "udp"), "tcp")
    # rtsps://: check the camera's certificate against the system's CAs, or the
    # PEM bundle in tls_ca_file (capture/tls.py); false accepts any certificate.
    tls_verify: bool = setting(boolean, True)
    tls_ca_file: Path | None = setting(optional(path), None)
    open_timeout: float = setting(number(gt=0, le=120), 10.0)  # connect + DESCRIBE/SETUP + probe
    read_timeout: float = setting(number(gt=0, le=120), 5.0)  # no packet at all for this long
    no_frame_timeout: float = setting(number(gt=0, le=600), 10.0)  # packets but no picture
    backoff_initial: float = setting(number(gt=0, le=60), 0.5)
    backoff_max: float = setting(number(gt=0, le=3600), 30.0)
    manifest_interval: float = setting(number(gt=0, le=3600), 5.0)
    jpeg_quality: int = setting(integer(10, 100), 90)
    # The count the runtime last saw (embedded: the gateway's records; cluster:
    # the VideoStream's status): a restarted worker never counts below it.
    frames_captured_floor: int = setting(integer(0), 0)
    # The embedded server's pid: the worker asks for SIGTERM when it dies (a
    # killed server leaves no orphan), and exits if it is already gone.
    parent_pid: int | None = setting(optional(integer()), None)
    probe_seconds: float = setting(number(0, le=10), 0.5)  # FFmpeg's analyzeduration at connect
    # auto: decode only keyframes when the interval is at least a GOP, else only
    # the packets up to each tick (see capture/sampling.py); all: decode all.
    decode_mode: DecodeMode = setting(member(DecodeMode), DecodeMode.AUTO)
    # rtp: our RTSP client and C receive loop (capture/rtp.py; H.264/H.265 over
    # TCP); pyav: PyAV's demux; auto: rtp where the camera allows, else pyav.
    demuxer: Demuxer = setting(choice("auto", "rtp", "pyav"), "auto")
    decode_threads: int = setting(integer(0, 16), 1)  # 0: FFmpeg picks
    # The liveness endpoint (capture/health.py): off unless a port is set (0:
    # any free one). A pod binds every address: the kubelet probes its IP.
    health_port: int | None = setting(optional(integer(0, 65535)), None)
    health_host: str = setting(text(), "0.0.0.0")
    # -- the grid at stop (cluster) -------------------------------------------
    # The stream's own geometry (VideoStream spec.grid). With grid_at_stop, a
    # graceful stop composes that grid from the stored top K and stores it, so
    # a kubectl user finds it named in status.grid. The operator turns it on;
    # the embedded gateway composes at /stop from the same directory anyway.
    grid_at_stop: bool = setting(boolean, False)
    grid_columns: int | None = setting(optional(integer(1, MAX_CELLS)), None)
    grid_tile_width: int = setting(integer(MIN_TILE, MAX_TILE), 300)
    grid_tile_height: int = setting(integer(MIN_TILE, MAX_TILE), 300)
    progress: Literal["stdout", "none", "kube"] = setting(
        choice("stdout", "none", "kube"), "stdout"
    )
    progress_interval: float = setting(number(0.5, le=300), 5.0)  # kube: seconds between PATCHes
    # In a pod, credentials come from the stream's Secret, never from the spec.
    source_username: Secret | None = setting(optional(secret), None)
    source_password: Secret | None = setting(optional(secret), None)
    source_full_url: Secret | None = setting(optional(secret), None)  # the Secret's `url` key
    kube_namespace: str | None = setting(optional(text()), None)
    kube_name: str | None = setting(optional(text()), None)
    kube_api_url: str | None = setting(optional(text()), None)  # default: the in-cluster service
    kube_token_file: Path = setting(
        path, Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    )
    kube_ca_file: Path | None = setting(
        optional(path), Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    )
    # auto: with S3 keys set, the small standard-library client (core/stores/s3lite.py;
    # ~20 MB less per pod than boto3), else boto3 and its credential chain.
    s3_client: Literal["auto", "boto3"] = setting(choice("auto", "boto3"), "auto")

    def __init__(self, **values: object) -> None:
        _load(self, values)

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"CaptureSettings({shown})"

    def lite_s3_client(self) -> bool:
        return self.s3_client == "auto"

    def camera_url(self) -> str:
        """The URL to open: the Secret's whole URL, or the spec's with its user."""
        if self.source_full_url and self.source_full_url.get_secret_value():
            return self.source_full_url.get_secret_value()
        url = self.source_url.get_secret_value()
        if not self.source_username or not self.source_username.get_secret_value():
            return url
        user = quote(self.source_username.get_secret_value(), safe="")
        password = self.source_password.get_secret_value() if self.source_password else ""
        userinfo = f"{user}:{quote(password, safe='')}" if password else user
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{userinfo}@{rest}"

    def grid_geometry(self) -> GridGeometry:
        """The stream's own grid geometry (its default grid)."""
        return GridGeometry(self.grid_columns, self.grid_tile_width, self.grid_tile_height)

    # As CommonSettings.source_policy and .open_store do for the other components.
    def source_policy(self) -> SourcePolicy:
        api_server = [self.kubernetes_service_host] if self.kubernetes_service_host else []
        return SourcePolicy.from_cidrs(
            self.source_allow_cidrs,
            self.source_deny_cidrs,
            deny_loopback=self.source_deny_loopback,
            deny_hosts=api_server,
        )

    def open_store(self) -> FrameStore:
        secret_key = self.s3_secret_access_key
        return FrameStore(
            open_object_store(
                self.store_url,
                s3_endpoint_url=self.s3_endpoint_url,
                s3_access_key_id=self.s3_access_key_id,
                s3_secret_access_key=secret_key.get_secret_value() if secret_key else None,
                s3_region=self.s3_region,
                lite=self.lite_s3_client(),
            )
        )
