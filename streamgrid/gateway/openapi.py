"""What FastAPI cannot write into the OpenAPI document by itself.

Parameters and JSON answers come from the routes' models (requests.py,
listing.py, schemas.py). Declared here: the plain-text error answers, JPEG
answers, /start's body (a form or JSON, read by deps.py rather than by
FastAPI), the token's answers; and the 422 FastAPI adds to every operation
with parameters is taken out, since bad input is a 400 (errors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..core.urls import MAX_URL_LENGTH

Json = dict[str, Any]
DESCRIPTION = (
    "Bad input is a 400 (or 404, 413, 429) with a one-line plain-text reason; grids are image/jpeg."
)


def plain(description: str) -> Json:
    """A plain-text answer (the spec's error bodies)."""
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def jpeg(description: str, **more: Any) -> Json:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"description": description, "content": {"image/jpeg": binary}, **more}


SERVER_ERROR = plain("Unexpected failure: `Internal server error`.")
IMAGE_FAILED = plain("`Failed to create image`, or `Internal server error`.")
STORE_UNREADABLE = plain("`Store unavailable: <why>`: the store cannot be read now.")

_URL_FORM: Json = {
    "type": "object",
    "properties": {
        "rtsp_url": {
            "type": "string",
            "maxLength": MAX_URL_LENGTH,
            "description": "The camera's rtsp:// or rtsps:// URL. Credentials in it "
            "(user:password@, password=, token= ...) are never shown again: /list and the "
            "logs mask them.",
        }
    },
}
START_BODY: Json = {
    "requestBody": {
        "required": True,
        "description": "The spec's form field `rtsp_url`, or the same as JSON.",
        "content": {
            "application/x-www-form-urlencoded": {"schema": _URL_FORM},
            "application/json": {"schema": _URL_FORM},
        },
    }
}

# With authentication on, every operation but /healthz answers these too.
AUTH_RESPONSES: dict[int | str, Json] = {
    401: plain("`Unauthorized: <why>`: no bearer token, or one nobody vouches for."),
    403: plain("`Forbidden: <user> may not <verb> videostreams...` (Kubernetes RBAC)."),
    503: plain("`Authentication unavailable: ...`: the token reviewer cannot be reached."),
}

_UNANSWERED = ("HTTPValidationError", "ValidationError")


def without_422(app: FastAPI) -> Callable[[], Json]:
    """``app.openapi``: FastAPI's document, less the 422 this API never answers."""

    def openapi() -> Json:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = schema.get("components", {}).get("schemas", {})
            for name in _UNANSWERED:
                schemas.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
