"""What a request may ask for: the query-parameter models of /start and
/stop/<id>, and the request a backend is given.

The models declare each parameter's type, bounds and default once: FastAPI
validates a query against them and writes the OpenAPI document from them. A
bad value is a one-line reason (a ``reason`` error, raised by the parsers
below, which read numbers and flags as this API always has); app.py answers
it as a plain-text 400, never a framework 422. Called outside FastAPI, the
parsers raise BadRequest with the same reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import ErrorDetails, PydanticCustomError

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

REASON = "reason"  # the error type whose message is the whole answer


class BadRequest(ValueError):
    pass


def reason(message: str) -> PydanticCustomError:
    """A validation error answered as ``message``, as it is."""
    return PydanticCustomError(REASON, "{message}", {"message": message})


def reason_of(errors: list[ErrorDetails] | list[Any]) -> str:
    """The one-line answer to a failed validation: its first error."""
    first = errors[0] if errors else {}
    if first.get("type") == REASON:
        return str(first["msg"])
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"Invalid request: {where}: {first.get('msg', 'invalid')}"


Query = TypeVar("Query", bound=BaseModel)


def validated(model: type[Query], params: Mapping[str, str]) -> Query:
    """``params`` (a query string's values) as ``model``; BadRequest."""
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise BadRequest(reason_of(exc.errors())) from None


def _number(raw: Any, name: str) -> float | None:
    """A finite number; None for an empty value (the default)."""
    text = str(raw).strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise reason(f"Invalid {name}: {str(raw)[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise reason(f"Invalid {name}: must be a finite number")
    return value


def _integer(raw: Any, name: str, low: int, high: int) -> int | None:
    value = _number(raw, name)
    if value is None:
        return None
    if value != int(value) or not low <= value <= high:
        raise reason(f"Invalid {name}: must be an integer between {low} and {high}")
    return int(value)


_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


# Left out: None, which the document does not offer (FastAPI shows no null default).
Columns = Annotated[int, Field(ge=1, le=MAX_CELLS)] | SkipJsonSchema[None]
TileSide = Annotated[int, Field(ge=MIN_TILE, le=MAX_TILE)] | SkipJsonSchema[None]


class GridQuery(BaseModel):
    """The grid's layout: /start's and /stop/<id>'s query parameters."""

    grid_cols: Columns = Field(
        None, description="Columns of the grid (default: ceil(sqrt(top_k)))."
    )
    tile_width: TileSide = Field(None, description="Tile width in pixels (default 300).")
    tile_height: TileSide = Field(None, description="Tile height in pixels (default 300).")
    tile_size: TileSide = Field(
        None, description="Width and height of a square tile in pixels (default 300)."
    )

    @field_validator("grid_cols", mode="before")
    @classmethod
    def _columns(cls, raw: Any) -> int | None:
        return _integer(raw, "grid_cols", 1, MAX_CELLS)

    @field_validator("tile_width", "tile_height", "tile_size", mode="before")
    @classmethod
    def _side(cls, raw: Any, info: ValidationInfo) -> int | None:
        return _integer(raw, str(info.field_name), MIN_TILE, MAX_TILE)

    def geometry(self) -> GridGeometry:
        default = GridGeometry()
        return GridGeometry(
            cols=self.grid_cols,
            tile_width=self.tile_width or self.tile_size or default.tile_width,
            tile_height=self.tile_height or self.tile_size or default.tile_height,
        )


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


class _Sampling(BaseModel):
    """How a stream samples: /start's first query parameters."""

    capture_interval: float = Field(
        INTERVAL_DEFAULT,
        ge=INTERVAL_MIN,
        le=INTERVAL_MAX,
        description=f"Seconds between samples (default {INTERVAL_DEFAULT:g}).",
    )
    top_k: int = Field(
        TOP_K_DEFAULT,
        ge=TOP_K_MIN,
        le=TOP_K_MAX,
        description=f"Frames kept (default {TOP_K_DEFAULT}).",
    )
    rtsp_transport: str = Field(
        "tcp",
        description="RTP over the RTSP connection (tcp, the default) or over UDP.",
        json_schema_extra={"enum": list(TRANSPORTS)},
    )

    @field_validator("capture_interval", mode="before")
    @classmethod
    def _interval(cls, raw: Any) -> float:
        value = _number(raw, "capture_interval")
        if value is None:
            return INTERVAL_DEFAULT
        if not INTERVAL_MIN <= value <= INTERVAL_MAX:
            raise reason(
                "Invalid capture_interval: must be between "
                f"{INTERVAL_MIN:g} and {INTERVAL_MAX:g} seconds"
            )
        return value

    @field_validator("top_k", mode="before")
    @classmethod
    def _top_k(cls, raw: Any) -> int:
        value = _integer(raw, "top_k", TOP_K_MIN, TOP_K_MAX)
        return TOP_K_DEFAULT if value is None else value

    @field_validator("rtsp_transport", mode="before")
    @classmethod
    def _transport(cls, raw: Any) -> str:
        transport = (str(raw) or "tcp").strip().lower()
        if transport not in TRANSPORTS:
            raise reason(f"Invalid rtsp_transport: must be one of {', '.join(TRANSPORTS)}")
        return transport


class StartQuery(GridQuery, _Sampling):
    """/start's query parameters. Fields are checked in order, the first bad
    one answered: the bases' fields come first in reverse (_Sampling's, then
    GridQuery's), then tls_verify, and last whether the grid can be made."""

    tls_verify: bool = Field(
        True, description="rtsps:// only: check the camera's certificate (default true)."
    )

    @field_validator("tls_verify", mode="before")
    @classmethod
    def _flag(cls, raw: Any) -> bool:
        text = str(raw).strip().lower()
        if not text:
            return True
        if text not in _FLAGS:
            raise reason("Invalid tls_verify: must be true or false")
        return _FLAGS[text]

    @model_validator(mode="after")
    def _grid_can_be_made(self) -> StartQuery:
        try:  # the grid of a full top K must be one that can be made
            self.geometry().check_size(self.top_k, self.top_k)
        except GridTooLarge as exc:
            raise reason(f"Invalid grid: {exc}") from None
        return self

    def request(self, rtsp_url: str) -> StartRequest:
        return StartRequest(
            rtsp_url=rtsp_url,
            capture_interval=self.capture_interval,
            top_k=self.top_k,
            rtsp_transport=self.rtsp_transport,
            geometry=self.geometry(),
            tls_verify=self.tls_verify,
        )


def parse_rtsp_url(rtsp_url: str | None) -> str:
    """The body's URL, validated; BadRequest. Checked before the query."""
    if rtsp_url is None or not rtsp_url.strip():
        raise BadRequest("Missing RTSP URL")
    try:
        return validate_rtsp_url(rtsp_url)
    except InvalidURLError as exc:
        raise BadRequest(f"Invalid RTSP URL: {exc}") from None


def parse_start(rtsp_url: str | None, params: Mapping[str, str]) -> StartRequest:
    url = parse_rtsp_url(rtsp_url)
    return validated(StartQuery, params).request(url)


def parse_geometry(params: Mapping[str, str]) -> GridGeometry:
    return validated(GridQuery, params).geometry()


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
