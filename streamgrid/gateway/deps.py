"""What routes are given: ``Annotated[..., Depends(...)]`` for the runtime,
the metrics and /start's body.

Authentication and the browser checks are ASGI middlewares (auth.py,
browsers.py): they answer before any route, 404s and docs included. The
bearer scheme here only documents what RequireToken asks for.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBearer
from starlette.types import Message

from .backend import StreamBackend
from .errors import BodyTooLarge
from .metrics import GatewayMetrics
from .requests import BadRequest, json_depth, parse_rtsp_url

MAX_BODY = 64 * 1024
MAX_JSON_DEPTH = 32
MAX_FORM_FIELDS = 20


def _backend(request: Request) -> StreamBackend:
    backend: StreamBackend = request.app.state.backend  # made by the app's lifespan
    return backend


def _metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


Backend = Annotated[StreamBackend, Depends(_backend)]
Metrics = Annotated[GatewayMetrics, Depends(_metrics)]


async def bounded_body(request: Request) -> bytes:
    """The body, read no further than MAX_BODY: Content-Length is checked
    first, and a chunked body is counted as it comes."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _form_field(request: Request, body: bytes, name: str) -> Any:
    """A form field of ``body`` (urlencoded or multipart, no files), parsed by
    Starlette as ``request.form()`` would, over a receive that replays it."""

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=0, max_fields=MAX_FORM_FIELDS)
    except Exception:  # noqa: BLE001 - any unparsable form is the client's error
        raise BadRequest("Invalid form body") from None
    return form.get(name)


async def _rtsp_url(request: Request) -> str:
    """The spec's form field ``rtsp_url`` (a JSON body ``{"rtsp_url": ...}``
    works too), validated; BadRequest, BodyTooLarge."""
    raw = await bounded_body(request)
    if request.headers.get("content-type", "").startswith("application/json"):
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise BadRequest(f"Invalid JSON body: nested deeper than {MAX_JSON_DEPTH}")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            raise BadRequest("Invalid JSON body") from None
        value = body.get("rtsp_url") if isinstance(body, dict) else None
    else:
        value = await _form_field(request, raw, "rtsp_url")
    if value is not None and not isinstance(value, str):
        raise BadRequest("Invalid RTSP URL: must be text")
    return parse_rtsp_url(value)


RtspUrl = Annotated[str, Depends(_rtsp_url)]

# For the document only: RequireToken checks the token before any route.
BEARER = "bearer"
BearerToken = Security(HTTPBearer(scheme_name=BEARER, auto_error=False))
