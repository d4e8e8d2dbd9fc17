"""The OpenAPI document as the API really behaves, and its docs pages served
from local assets.

The routes read their inputs by hand (so that every bad input is a plain-text
400 with a reason, never a framework 422), so FastAPI cannot see them: the
bodies, query parameters and responses are declared here, once, and the
generated 422s (which this API never answers) are taken out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

from ..core.geometry import MAX_CELLS, MAX_TILE, MIN_TILE
from ..core.models import (
    INTERVAL_DEFAULT,
    INTERVAL_MAX,
    INTERVAL_MIN,
    TOP_K_DEFAULT,
    TOP_K_MAX,
    TOP_K_MIN,
    TRANSPORTS,
    StreamState,
)
from ..core.urls import MAX_URL_LENGTH

Json = dict[str, Any]
DOCS_ASSETS = "/docs-assets"  # where the docs pages' scripts and styles are served
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
# Swagger UI and ReDoc as the fastapi-offline package ships them.
_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"


def text(description: str) -> Json:
    """A plain-text response (the spec's error bodies)."""
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def json_body(description: str, schema: Json) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


SERVER_ERROR = text("Unexpected failure: `Internal server error`.")

# -- /start -------------------------------------------------------------------
_RTSP_URL: Json = {
    "type": "string",
    "maxLength": MAX_URL_LENGTH,
    "description": "The camera's rtsp:// or rtsps:// URL. Credentials in it (user:password@, "
    "password=, token= ...) are never shown again: /list and the logs mask them.",
}
_URL_FORM: Json = {"type": "object", "properties": {"rtsp_url": _RTSP_URL}}


def _integer(name: str, low: int, high: int, description: str) -> Json:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": low, "maximum": high},
    }


GEOMETRY_PARAMETERS: list[Json] = [
    _integer("grid_cols", 1, MAX_CELLS, "Columns of the grid (default: ceil(sqrt(top_k))).")
] + [
    _integer(name, MIN_TILE, MAX_TILE, f"{what} in pixels (default 300).")
    for name, what in (
        ("tile_width", "Tile width"),
        ("tile_height", "Tile height"),
        ("tile_size", "Width and height of a square tile"),
    )
]
START_PARAMETERS: list[Json] = [
    {
        "name": "capture_interval",
        "in": "query",
        "required": False,
        "description": f"Seconds between samples (default {INTERVAL_DEFAULT:g}).",
        "schema": {"type": "number", "minimum": INTERVAL_MIN, "maximum": INTERVAL_MAX},
    },
    _integer("top_k", TOP_K_MIN, TOP_K_MAX, f"Frames kept (default {TOP_K_DEFAULT})."),
    {
        "name": "rtsp_transport",
        "in": "query",
        "required": False,
        "description": "RTP over the RTSP connection (tcp, the default) or over UDP.",
        "schema": {"type": "string", "enum": list(TRANSPORTS)},
    },
    {
        "name": "tls_verify",
        "in": "query",
        "required": False,
        "description": "rtsps:// only: check the camera's certificate (default true).",
        "schema": {"type": "boolean"},
    },
    *GEOMETRY_PARAMETERS,
]
START: Json = {
    "openapi_extra": {
        "parameters": START_PARAMETERS,
        "requestBody": {
            "required": True,
            "description": "The spec's form field `rtsp_url`, or the same as JSON.",
            "content": {
                "application/x-www-form-urlencoded": {"schema": _URL_FORM},
                "application/json": {"schema": _URL_FORM},
            },
        },
    },
    "responses": {
        200: json_body(
            "Stream started.",
            {
                "type": "object",
                "required": ["status", "stream_id"],
                "properties": {
                    "status": {"type": "string", "const": "Video stream started"},
                    "stream_id": {"type": "string"},
                },
            },
        ),
        400: text("`Missing RTSP URL`, or `Invalid <what>: <why>` for any other bad input."),
        413: text("`Request body too large`."),
        429: text("`Too many streams: the limit is <n>`."),
        500: SERVER_ERROR,
        503: text("`Store unavailable: <why>`: the stream records cannot be written."),
    },
}

# -- the others ---------------------------------------------------------------
_NUMBER_OR_NULL: Json = {"type": ["number", "null"]}
_STATES: Json = {"type": "string", "enum": [s.value for s in StreamState]}
LIST_PARAMETERS: list[Json] = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "At most this many streams, sorted by id (an extension; without "
        "it every stream not stopped is listed).",
        "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
    },
    {
        "name": "continue",
        "in": "query",
        "required": False,
        "description": "Where the next page starts: the `continue` of the page before.",
        "schema": {"type": "string", "maxLength": 512},
    },
]
LIST: Json = {
    "openapi_extra": {"parameters": LIST_PARAMETERS},
    "responses": {
        200: json_body(
            "Streams not stopped, by id.",
            {
                "type": "object",
                "required": ["active_streams"],
                "properties": {
                    "active_streams": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["frames_captured", "url", "running_time"],
                            "properties": {
                                "frames_captured": {"type": "integer", "minimum": 0},
                                "url": {"type": "string", "description": "Credentials masked."},
                                "running_time": {"type": "number", "minimum": 0},
                                "state": _STATES,
                            },
                        },
                    },
                    "continue": {
                        "type": "string",
                        "description": "With `limit`: the token of the next page; absent "
                        "on the last.",
                    },
                },
            },
        ),
        400: text("`Invalid request: limit must be ...` or a `continue` not given by this server."),
        500: SERVER_ERROR,
    },
}
STATUS: Json = {
    "responses": {
        200: json_body(
            "`Stream status: <state>`, and why for a failed or reconnecting stream.",
            {"type": "string", "pattern": "^Stream status: "},
        ),
        404: text("`Stream not found with id <stream_id>`."),
        500: SERVER_ERROR,
    }
}
DETAILS: Json = {
    "responses": {
        200: json_body(
            "Everything known about the stream (an extension).",
            {
                "type": "object",
                "required": ["stream_id", "url", "state", "frames_captured", "running_time"],
                "properties": {
                    "stream_id": {"type": "string"},
                    "url": {"type": "string", "description": "Credentials masked."},
                    "state": _STATES,
                    "reason": {"type": "string"},
                    "frames_captured": {"type": "integer", "minimum": 0},
                    "running_time": {"type": "number", "minimum": 0},
                    "started_at": {"type": "number"},
                    "stopped_at": _NUMBER_OR_NULL,
                    "last_frame_at": _NUMBER_OR_NULL,
                    "capture_interval": {"type": "number"},
                    "top_k": {"type": "integer"},
                },
                "additionalProperties": True,
            },
        ),
        404: text("`Stream not found with id <stream_id>`."),
        500: SERVER_ERROR,
    }
}
STOP: Json = {
    "openapi_extra": {"parameters": GEOMETRY_PARAMETERS},
    "responses": {
        200: {
            "description": "The grid of the brightest frames, brightest first, row by row. "
            "Query parameters choose another geometry than the stream's own.",
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        },
        400: text("`No frames captured`, or `Invalid <what>: <why>`."),
        404: text("`Stream ID <stream_id> not found`."),
        500: text("`Failed to create image`, or `Internal server error`."),
        503: text("`Store unavailable: <why>`: nothing was stopped; stop again later."),
    },
}
STOP_ALL: Json = {
    "responses": {
        200: json_body(
            "Each stream that was running, and what became of it.",
            {
                "type": "object",
                "required": ["results"],
                "properties": {
                    "results": {"type": "object", "additionalProperties": {"type": "string"}}
                },
            },
        ),
        500: SERVER_ERROR,
    }
}
HEALTHZ: Json = {
    "responses": {
        200: json_body(
            "The gateway answers.",
            {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"type": "string", "const": "ok"}},
            },
        ),
    }
}

# -- the dashboard's reads (gateway/dashboard.py) -------------------------------
_STORE_UNAVAILABLE = text("`Store unavailable: <why>`: the store cannot be read now.")
STREAMS: Json = {
    "responses": {
        200: json_body(
            "Every stream not stopped, oldest first, each with everything known about it, "
            "as `GET /streams/{stream_id}` has it (an extension: the dashboard polls it).",
            {
                "type": "object",
                "required": ["now", "streams"],
                "properties": {
                    "now": {
                        "type": "number",
                        "description": "The server's clock, unix seconds: ages are relative to it.",
                    },
                    "streams": {
                        "type": "array",
                        "items": DETAILS["responses"][200]["content"]["application/json"]["schema"],
                    },
                },
            },
        ),
        500: SERVER_ERROR,
    }
}
FRAMES: Json = {
    "responses": {
        200: json_body(
            "The stream's kept frames as its store holds them now, brightest first "
            "(an extension). `key` names a frame for good: a new key at a rank is a new frame.",
            {
                "type": "object",
                "required": ["stream_id", "frames"],
                "properties": {
                    "stream_id": {"type": "string"},
                    "frames": {
                        "type": "array",
                        "maxItems": TOP_K_MAX,
                        "items": {
                            "type": "object",
                            "required": ["rank", "key", "seq", "brightness", "captured_at"],
                            "properties": {
                                "rank": {"type": "integer", "minimum": 0},
                                "key": {"type": "string"},
                                "seq": {"type": "integer", "minimum": 0},
                                "brightness": {"type": "number", "minimum": 0, "maximum": 255},
                                "captured_at": {"type": "number"},
                            },
                        },
                    },
                },
            },
        ),
        404: text("`Stream not found with id <stream_id>`."),
        500: SERVER_ERROR,
        503: _STORE_UNAVAILABLE,
    }
}
FRAME: Json = {
    "responses": {
        200: {
            "description": "The kept frame of this rank, scaled to 160 pixels wide "
            "(an extension). Its ETag is the frame's key: If-None-Match with it answers "
            "304 while the rank holds the same frame.",
            "headers": {"ETag": {"schema": {"type": "string"}}},
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        },
        404: text("`Stream not found with id <stream_id>`, or `No frame <rank> for stream <id>`."),
        500: text("`Failed to create image`, or `Internal server error`."),
        503: _STORE_UNAVAILABLE,
    }
}

_UNANSWERED = ("HTTPValidationError", "ValidationError")


BEARER = "bearer"
AUTH_RESPONSES: Json = {
    "401": text("`Unauthorized: <why>`: no bearer token, or one nobody vouches for."),
    "403": text("`Forbidden: <user> may not <verb> videostreams...` (Kubernetes RBAC)."),
    "503": text("`Authentication unavailable: ...`: the token reviewer cannot be reached."),
}


def _require_bearer(schema: Json) -> None:
    """Every operation but /healthz takes a bearer token (gateway/auth.py)."""
    schema.setdefault("components", {})["securitySchemes"] = {
        BEARER: {"type": "http", "scheme": "bearer"}
    }
    for path, item in schema.get("paths", {}).items():
        if path == "/healthz":
            continue
        for operation in item.values():
            operation["security"] = [{BEARER: []}]
            responses = operation.setdefault("responses", {})
            for code, response in AUTH_RESPONSES.items():
                responses.setdefault(code, response)


def _truthful(app: FastAPI, authenticated: bool) -> Callable[[], Json]:
    def openapi() -> Json:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description="Bad input is a 400 (or 404, 413, 429) with a one-line "
                "plain-text reason; grids are image/jpeg.",
                routes=app.routes,
            )
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            components = schema.get("components", {})
            for name in _UNANSWERED:
                components.get("schemas", {}).pop(name, None)
            if not components.get("schemas"):
                components.pop("schemas", None)
            if not components:
                schema.pop("components", None)
            if authenticated:
                _require_bearer(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def install_docs(app: FastAPI, authenticated: bool = False) -> None:
    """The truthful OpenAPI document, and /docs and /redoc with their assets
    served by the gateway itself (FastAPI's own load them from a CDN: blank
    offline)."""
    app.openapi = _truthful(app, authenticated)  # type: ignore[method-assign]
    app.router.routes[:] = [r for r in app.router.routes if not _is_cdn_docs(r)]
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + "/docs/oauth2-redirect",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    async def oauth2_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    # Plain routes, as FastAPI adds its own docs: outside the schema.
    app.add_route("/docs", swagger, include_in_schema=False)
    app.add_route("/docs/oauth2-redirect", oauth2_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    app.mount(DOCS_ASSETS, StaticFiles(directory=_ASSETS_DIR), name="docs-assets")


def _is_cdn_docs(route: BaseRoute) -> bool:
    return isinstance(route, Route) and route.path in DOCS_PATHS
