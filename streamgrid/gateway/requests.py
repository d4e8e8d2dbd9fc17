"""Turning query strings and form fields into validated requests.

Plain functions raising BadRequest with a one-line reason, so every bad input
becomes a 400 with a clear message, never a framework 422 or a 500.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..core.geometry import MAX_CELLS, MAX_TILE, MIN_TILE, GridGeometry, GridTooLarge
from ..core.models import (
    INTERVAL_DEFAULT,
    INTERVAL_MAX,
    INTERVAL_MIN,
    TOP_K_DEFAULT,
    TOP_K_MAX,
    TOP_K_MIN,
    TRANSPORTS,
)
from ..core.sources import SourceNotAllowed, SourcePolicy
from ..core.urls import InvalidURLError, validate_rtsp_url


class BadRequest(ValueError):
    pass


@dataclass(frozen=True)
class StartRequest:
    rtsp_url: str
    capture_interval: float = INTERVAL_DEFAULT
    top_k: int = TOP_K_DEFAULT
    rtsp_transport: str = "tcp"
    geometry: GridGeometry = field(default_factory=GridGeometry)
    # rtsps:// only: check the camera's certificate (off: any certificate, for
    # cameras with a self-signed one, said per stream).
    tls_verify: bool = True


def _number(params: Mapping[str, str], name: str) -> float | None:
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        raise BadRequest(f"Invalid {name}: {raw[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"Invalid {name}: must be a finite number")
    return value


def _integer(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    value = _number(params, name)
    if value is None:
        return None
    if value != int(value) or not low <= value <= high:
        raise BadRequest(f"Invalid {name}: must be an integer between {low} and {high}")
    return int(value)


def parse_geometry(params: Mapping[str, str], base: GridGeometry | None = None) -> GridGeometry:
    base = base or GridGeometry()
    cols = _integer(params, "grid_cols", 1, MAX_CELLS)
    width = _integer(params, "tile_width", MIN_TILE, MAX_TILE)
    height = _integer(params, "tile_height", MIN_TILE, MAX_TILE)
    size = _integer(params, "tile_size", MIN_TILE, MAX_TILE)  # square tiles, one parameter
    return GridGeometry(
        cols=cols if cols is not None else base.cols,
        tile_width=width or size or base.tile_width,
        tile_height=height or size or base.tile_height,
    )


def _flag(params: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (params.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in _FLAGS:
        raise BadRequest(f"Invalid {name}: must be true or false")
    return _FLAGS[raw]


_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_start(rtsp_url: str | None, params: Mapping[str, str]) -> StartRequest:
    if rtsp_url is None or not rtsp_url.strip():
        raise BadRequest("Missing RTSP URL")
    try:
        url = validate_rtsp_url(rtsp_url)
    except InvalidURLError as exc:
        raise BadRequest(f"Invalid RTSP URL: {exc}") from None
    interval = _number(params, "capture_interval")
    if interval is not None and not INTERVAL_MIN <= interval <= INTERVAL_MAX:
        raise BadRequest(
            "Invalid capture_interval: must be between "
            f"{INTERVAL_MIN:g} and {INTERVAL_MAX:g} seconds"
        )
    top_k = _integer(params, "top_k", TOP_K_MIN, TOP_K_MAX)
    transport = (params.get("rtsp_transport") or "tcp").strip().lower()
    if transport not in TRANSPORTS:
        raise BadRequest(f"Invalid rtsp_transport: must be one of {', '.join(TRANSPORTS)}")
    top_k = top_k if top_k is not None else TOP_K_DEFAULT
    geometry = parse_geometry(params)
    try:  # the grid of a full top K must be one that can be made
        geometry.check_size(top_k, top_k)
    except GridTooLarge as exc:
        raise BadRequest(f"Invalid grid: {exc}") from None
    return StartRequest(
        rtsp_url=url,
        capture_interval=interval if interval is not None else INTERVAL_DEFAULT,
        top_k=top_k,
        rtsp_transport=transport,
        geometry=geometry,
        tls_verify=_flag(params, "tls_verify", True),
    )


def check_source(rtsp_url: str, policy: SourcePolicy) -> None:
    """A 400 for a URL (validated) whose host is an address, in any spelling,
    that the source policy refuses. A host name is not looked up here (no DNS
    on the request path): the worker checks its addresses when it connects."""
    host = urlsplit(rtsp_url).hostname or ""
    try:
        policy.check_literal(host)
    except SourceNotAllowed as exc:
        raise BadRequest(f"Source not allowed: {exc.reason}") from None


def json_depth(text: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text, strings skipped;
    counted before parsing, since the parser recurses (a deep body was a 500)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest
