"""FastAPI routes: a few lines each over a StreamBackend.

Error bodies are the spec's plain-text strings; everything a user can get
wrong is a 4xx with a one-line reason.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..core.geometry import GridTooLarge
from ..core.grid_store import GRID_OBSERVER
from ..core.logs import log_event
from .auth import Authenticator, RequireToken
from .backend import (
    GridFailed,
    NoFramesCaptured,
    StoreUnavailable,
    StreamBackend,
    StreamInfo,
    StreamNotFound,
    TooManyStreams,
)
from .browsers import BrowserPolicy, RefuseCrossSite
from .dashboard import install_dashboard
from .listing import encode_list, page_params, select
from .metrics import METRICS_PATH, CountRequests, GatewayMetrics, MetricsSettings
from .openapi import DETAILS, HEALTHZ, LIST, START, STATUS, STOP, STOP_ALL, install_docs
from .requests import BadRequest, json_depth, parse_geometry, parse_start

log = logging.getLogger("streamgrid.gateway")
MAX_BODY = 64 * 1024
MAX_JSON_DEPTH = 32
MAX_ID_SHOWN = 256  # characters of an unknown id echoed in a 404


class BodyTooLarge(Exception):
    """Over MAX_BODY, whatever the transfer encoding: 413."""


def _text(status: int, message: str, headers: Mapping[str, str] | None = None) -> PlainTextResponse:
    return PlainTextResponse(message, status_code=status, headers=headers)


def _shown_id(stream_id: str) -> str:
    """An id as a 404 echoes it: control characters escaped, length capped, so
    that the one-line reason stays one line of text."""
    shown = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in stream_id[:MAX_ID_SHOWN]
    )
    return shown + ("..." if len(stream_id) > MAX_ID_SHOWN else "")


async def _bounded_body(request: Request) -> bytes:
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
    body = b"".join(chunks)
    request._body = body  # what request.form() reads, as Starlette caches it
    return body


async def _rtsp_url_from_body(request: Request) -> str | None:
    """The spec's form field; a JSON body ``{"rtsp_url": ...}`` works too."""
    raw = await _bounded_body(request)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise BadRequest(f"Invalid JSON body: nested deeper than {MAX_JSON_DEPTH}")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            raise BadRequest("Invalid JSON body") from None
        value = body.get("rtsp_url") if isinstance(body, dict) else None
    else:
        try:
            form = await request.form(max_files=0, max_fields=20)
        except Exception:  # noqa: BLE001 - any unparsable form is the client's error
            raise BadRequest("Invalid form body") from None
        value = form.get("rtsp_url")
    if value is not None and not isinstance(value, str):
        raise BadRequest("Invalid RTSP URL: must be text")
    return value


def create_app(
    make_backend: Callable[[], StreamBackend],
    authenticator: Authenticator | None = None,
    metrics_public: bool | None = None,
    browsers: BrowserPolicy | None = None,
) -> FastAPI:
    """``metrics_public``: /metrics without a token (default: STREAMGRID_METRICS_PUBLIC).
    ``browsers``: the Host names and origins web pages may use (default: IP
    literals, localhost and this machine's name; no other origin)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backend = make_backend()
        try:
            yield
        finally:
            await run_in_threadpool(app.state.backend.close)

    app = FastAPI(title="streamgrid", version=__version__, lifespan=lifespan)
    public = MetricsSettings().metrics_public if metrics_public is None else metrics_public
    policy = browsers or BrowserPolicy.build()
    # Added innermost first: requests pass CountRequests, RefuseCrossSite, CORS,
    # RequireToken, then the routes.
    if authenticator is not None:
        app.add_middleware(
            RequireToken,
            authenticator=authenticator,
            also_open=frozenset({METRICS_PATH}) if public else frozenset(),
        )
    if policy.origins:  # CORS stays closed unless origins are allowed
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(policy.origins),
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(RefuseCrossSite, policy=policy)
    metrics = GatewayMetrics(lambda: getattr(app.state, "backend", None))
    app.add_middleware(CountRequests, metrics=metrics, routes=lambda: app.router.routes)

    def backend(request: Request) -> StreamBackend:
        b: StreamBackend = request.app.state.backend
        return b

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> Response:
        return _text(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _text(400, f"Invalid request: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _text(exc.status_code, str(exc.detail), exc.headers)  # 405: Allow

    @app.exception_handler(BodyTooLarge)
    async def too_large(_: Request, exc: BodyTooLarge) -> Response:
        return _text(413, "Request body too large")

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(_: Request, exc: StoreUnavailable) -> Response:
        return _text(503, f"Store unavailable: {exc}")

    @app.exception_handler(TooManyStreams)
    async def too_many(_: Request, exc: TooManyStreams) -> Response:
        return _text(429, f"Too many streams: the limit is {exc.args[0]}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log_event(
            log,
            "request.error",
            logging.ERROR,
            path=request.url.path,
            error=f"{type(exc).__name__}: {exc}",
        )
        return _text(500, "Internal server error")

    @app.post("/start", response_model=None, **START)
    async def start(request: Request) -> dict[str, str]:
        rtsp_url = await _rtsp_url_from_body(request)
        parsed = parse_start(rtsp_url, request.query_params)
        stream_id = await run_in_threadpool(backend(request).start, parsed)
        return {"status": "Video stream started", "stream_id": stream_id}

    @app.get("/list", response_model=None, **LIST)
    async def list_streams(request: Request) -> Response:
        limit, after = page_params(request.query_params)
        entries = await run_in_threadpool(backend(request).list_entries)
        chosen, next_token = select(entries, limit, after)
        body = encode_list(chosen, time.time(), next_token)
        return Response(body, media_type="application/json")

    async def find(request: Request, stream_id: str) -> StreamInfo | Response:
        try:
            info: StreamInfo = await run_in_threadpool(backend(request).info, stream_id)
        except StreamNotFound:
            return _text(404, f"Stream not found with id {_shown_id(stream_id)}")
        return info

    @app.post("/status/{stream_id}", **STATUS)
    async def status(stream_id: str, request: Request) -> Response:
        info = await find(request, stream_id)
        return info if isinstance(info, Response) else JSONResponse(info.status_line())

    @app.get("/streams/{stream_id}", **DETAILS)
    async def details(stream_id: str, request: Request) -> Response:
        """Extension: everything known about one stream, as JSON."""
        info = await find(request, stream_id)
        return info if isinstance(info, Response) else JSONResponse(info.to_json())

    @app.post("/stop/{stream_id}", response_class=Response, **STOP)
    async def stop(stream_id: str, request: Request) -> Response:
        geometry = parse_geometry(request.query_params) if request.query_params else None
        GRID_OBSERVER.set(metrics.grid_served)  # this request's context only
        try:
            jpeg = await run_in_threadpool(backend(request).stop, stream_id, geometry)
        except StreamNotFound:
            return _text(404, f"Stream ID {_shown_id(stream_id)} not found")
        except NoFramesCaptured:
            return _text(400, "No frames captured")
        except GridTooLarge as exc:
            return _text(400, f"Invalid grid: {exc}")
        except GridFailed:
            return _text(500, "Failed to create image")
        return Response(jpeg, media_type="image/jpeg")

    @app.post("/stop", response_model=None, **STOP_ALL)
    async def stop_all(request: Request) -> dict[str, dict[str, str]]:
        return {"results": await run_in_threadpool(backend(request).stop_all)}

    @app.api_route(METRICS_PATH, methods=["GET", "HEAD"], include_in_schema=False)
    async def metrics_exposition() -> Response:
        """Prometheus text exposition (docs/metrics.md); behind the token
        unless public."""
        body, content_type = await run_in_threadpool(metrics.render)
        return Response(body, media_type=content_type)

    @app.get("/healthz", response_model=None, **HEALTHZ)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    install_dashboard(app, _shown_id)  # GET /, its assets, /streams and kept frames
    install_docs(app, authenticated=authenticator is not None)
    return app
