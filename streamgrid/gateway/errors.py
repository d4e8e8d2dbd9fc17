"""Errors as the spec answers them: plain text, one line, a 4xx for anything
the client got wrong (never a framework 422), a 500 only for our own faults."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException

from ..core.geometry import GridTooLarge
from ..core.logs import log_event
from .backend import GridFailed, NoFramesCaptured, StoreUnavailable, StreamNotFound, TooManyStreams
from .requests import BadRequest, reason_of

log = logging.getLogger("streamgrid.gateway")
MAX_ID_SHOWN = 256  # characters of an unknown id echoed in a 404


class BodyTooLarge(Exception):
    """Over the body's bound (deps.MAX_BODY), whatever the transfer encoding: 413."""


def text(status: int, message: str, headers: Mapping[str, str] | None = None) -> PlainTextResponse:
    return PlainTextResponse(message, status_code=status, headers=headers)


def shown_id(stream_id: str) -> str:
    """An id as a 404 echoes it: control characters escaped, length capped, so
    that the one-line reason stays one line of text."""
    shown = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in stream_id[:MAX_ID_SHOWN]
    )
    return shown + ("..." if len(stream_id) > MAX_ID_SHOWN else "")


def stream_not_found(stream_id: str) -> Response:
    return text(404, f"Stream not found with id {shown_id(stream_id)}")


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


def _plain(status: int, message: Callable[[Any], str]) -> Handler:
    async def handler(_: Request, exc: Any) -> Response:
        return text(status, message(exc))

    return handler


async def _http_error(_: Request, exc: HTTPException) -> Response:
    return text(exc.status_code, str(exc.detail), exc.headers)  # 405: Allow


async def _unexpected(request: Request, exc: Exception) -> Response:
    log_event(
        log,
        "request.error",
        logging.ERROR,
        path=request.url.path,
        error=f"{type(exc).__name__}: {exc}",
    )
    return text(500, "Internal server error")


async def _not_found(request: Request, exc: StreamNotFound) -> Response:
    # /status/{stream_id} and /streams/{stream_id}...; /stop/{stream_id}
    # answers its own (the spec's other wording). Elsewhere it is our fault.
    if "stream_id" not in request.path_params:
        return await _unexpected(request, exc)
    return stream_not_found(request.path_params["stream_id"])


HANDLERS: dict[Any, Handler] = {
    BadRequest: _plain(400, str),
    RequestValidationError: _plain(400, lambda exc: reason_of(exc.errors())),
    BodyTooLarge: _plain(413, lambda _: "Request body too large"),
    NoFramesCaptured: _plain(400, lambda _: "No frames captured"),
    GridTooLarge: _plain(400, lambda exc: f"Invalid grid: {exc}"),
    TooManyStreams: _plain(429, lambda exc: f"Too many streams: the limit is {exc.args[0]}"),
    GridFailed: _plain(500, lambda _: "Failed to create image"),
    StoreUnavailable: _plain(503, lambda exc: f"Store unavailable: {exc}"),
    HTTPException: _http_error,
    StreamNotFound: _not_found,
    Exception: _unexpected,
}
