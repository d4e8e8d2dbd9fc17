"""``/docs`` (Swagger UI) and ``/redoc``, with their scripts and styles served
by the gateway itself (FastAPI's own load them from a CDN: blank offline)."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
# Swagger UI and ReDoc as the fastapi-offline package ships them.
_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"

router = APIRouter()


def _document(request: Request) -> tuple[str, str, str]:
    """(the OpenAPI document's URL, the app's title, where assets are)."""
    root = request.scope.get("root_path", "")
    return root + (request.app.openapi_url or "/openapi.json"), request.app.title, root + ASSETS


async def swagger(request: Request) -> HTMLResponse:
    openapi_url, title, assets = _document(request)
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} - Swagger UI",
        oauth2_redirect_url=request.scope.get("root_path", "") + OAUTH2_REDIRECT,
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png",
    )


async def oauth2_redirect(_: Request) -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


async def redoc(request: Request) -> HTMLResponse:
    openapi_url, title, assets = _document(request)
    return get_redoc_html(
        openapi_url=openapi_url,
        title=f"{title} - ReDoc",
        redoc_js_url=f"{assets}/redoc.standalone.js",
        redoc_favicon_url=f"{assets}/favicon.png",
        with_google_fonts=False,
    )


# Plain routes (GET and HEAD), outside the document, as FastAPI's own docs are.
router.add_route("/docs", swagger, include_in_schema=False)
router.add_route(OAUTH2_REDIRECT, oauth2_redirect, include_in_schema=False)
router.add_route("/redoc", redoc, include_in_schema=False)


def assets() -> StaticFiles:
    return StaticFiles(directory=_ASSETS_DIR)
