"""``GET /metrics``: the Prometheus exposition (docs/metrics.md), behind the
token unless public; not in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..deps import Metrics
from ..metrics import METRICS_PATH

router = APIRouter()


@router.api_route(METRICS_PATH, methods=["GET", "HEAD"], include_in_schema=False)
async def metrics_exposition(metrics: Metrics) -> Response:
    body, content_type = await run_in_threadpool(metrics.render)
    return Response(body, media_type=content_type)
