"""The gateway's FastAPI app: its middlewares, routers and error answers.

Routes are in routes/ (one APIRouter per resource), what they are given in
deps.py, the error answers in errors.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Mount

from .. import __version__
from . import dashboard
from .auth import Authenticator, RequireToken
from .backend import StreamBackend
from .browsers import BrowserPolicy, RefuseCrossSite
from .deps import BearerToken
from .errors import HANDLERS
from .metrics import METRICS_PATH, CountRequests, GatewayMetrics, MetricsSettings
from .openapi import AUTH_RESPONSES, DESCRIPTION, without_422
from .routes import dashboard as dashboard_routes
from .routes import docs, health, streams
from .routes import metrics as metrics_routes

# Routers that need a token when authentication is on (auth.py's open paths aside).
GUARDED: tuple[APIRouter, ...] = (streams.router, dashboard_routes.router, metrics_routes.router)
OPEN: tuple[APIRouter, ...] = (health.router, docs.router)


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

    app = FastAPI(
        title="streamgrid",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        exception_handlers=HANDLERS,
        docs_url=None,  # routes/docs.py serves them from local assets
        redoc_url=None,
    )
    app.openapi = without_422(app)  # type: ignore[method-assign]
    # The document says what RequireToken asks of every guarded route.
    documented: dict[str, Any] = (
        {"dependencies": [BearerToken], "responses": AUTH_RESPONSES} if authenticator else {}
    )
    for router in GUARDED:
        app.include_router(router, **documented)
    for router in OPEN:
        app.include_router(router)
    app.mount(dashboard.ASSETS, dashboard.assets(), name="dashboard-assets")
    app.mount(docs.ASSETS, docs.assets(), name="docs-assets")

    metrics = GatewayMetrics(lambda: getattr(app.state, "backend", None))
    app.state.metrics = metrics
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
    served = _served(app)
    app.add_middleware(CountRequests, metrics=metrics, routes=lambda: served)
    return app


def _served(app: FastAPI) -> list[BaseRoute]:
    """Every route a request can reach, for the metrics' route label: the
    routers' own (newer FastAPI keeps an included router as one entry of
    ``app.routes``, without the paths) and the mounts."""
    mounts = [route for route in app.router.routes if isinstance(route, Mount)]
    return [route for router in (*GUARDED, *OPEN) for route in router.routes] + mounts
