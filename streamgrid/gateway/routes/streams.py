"""The spec's routes (/start, /list, /status, /stop) and a stream's details."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ...core.grid_store import GRID_OBSERVER
from ..backend import StreamNotFound
from ..deps import Backend, Metrics, RtspUrl
from ..errors import shown_id, text
from ..listing import ListQuery, encode_list, select
from ..openapi import SERVER_ERROR, START_BODY, jpeg, plain
from ..requests import GridQuery, StartQuery
from ..schemas import Started, StatusLine, Stopped, StreamDetails, StreamList

router = APIRouter()
NOT_FOUND = plain("`Stream not found with id <stream_id>`.")


@router.post(
    "/start",
    openapi_extra=START_BODY,
    responses={
        200: {"description": "Stream started."},
        400: plain("`Missing RTSP URL`, or `Invalid <what>: <why>` for any other bad input."),
        413: plain("`Request body too large`."),
        429: plain("`Too many streams: the limit is <n>`."),
        500: SERVER_ERROR,
        503: plain("`Store unavailable: <why>`: the stream records cannot be written."),
    },
)
async def start(
    rtsp_url: RtspUrl, query: Annotated[StartQuery, Query()], backend: Backend
) -> Started:
    # The body (the URL) is read and checked first, then the query.
    stream_id = await run_in_threadpool(backend.start, query.request(rtsp_url))
    return Started(status="Video stream started", stream_id=stream_id)


@router.get(
    "/list",
    response_model=StreamList,
    responses={
        200: {"description": "Streams not stopped, by id."},
        400: plain(
            "`Invalid request: limit must be ...` or a `continue` not given by this server."
        ),
        500: SERVER_ERROR,
    },
)
async def list_streams(page: Annotated[ListQuery, Query()], backend: Backend) -> Response:
    entries = await run_in_threadpool(backend.list_entries)
    chosen, next_token = select(entries, page.limit, page.after)
    return Response(encode_list(chosen, time.time(), next_token), media_type="application/json")


@router.post(
    "/status/{stream_id}",
    response_model=StatusLine,
    responses={
        200: {
            "description": "`Stream status: <state>`, and why for a failed or reconnecting stream."
        },
        404: NOT_FOUND,
        500: SERVER_ERROR,
    },
)
async def status(stream_id: str, backend: Backend) -> Response:
    info = await run_in_threadpool(backend.info, stream_id)
    return JSONResponse(info.status_line())


@router.get(
    "/streams/{stream_id}",
    response_model=StreamDetails,
    responses={
        200: {"description": "Everything known about the stream (an extension)."},
        404: NOT_FOUND,
        500: SERVER_ERROR,
    },
)
async def details(stream_id: str, backend: Backend) -> Response:
    """Extension: everything known about one stream, as JSON."""
    info = await run_in_threadpool(backend.info, stream_id)
    return JSONResponse(info.to_json())


@router.post(
    "/stop/{stream_id}",
    response_class=Response,
    responses={
        200: jpeg(
            "The grid of the brightest frames, brightest first, row by row. "
            "Query parameters choose another geometry than the stream's own."
        ),
        400: plain("`No frames captured`, or `Invalid <what>: <why>`."),
        404: plain("`Stream ID <stream_id> not found`."),
        500: plain("`Failed to create image`, or `Internal server error`."),
        503: plain("`Store unavailable: <why>`: nothing was stopped; stop again later."),
    },
)
async def stop(
    stream_id: str, grid: Annotated[GridQuery, Query()], backend: Backend, metrics: Metrics
) -> Response:
    # No grid parameter: the stream's own geometry.
    geometry = grid.geometry() if grid.model_fields_set else None
    GRID_OBSERVER.set(metrics.grid_served)  # this request's context only
    try:
        jpeg_bytes = await run_in_threadpool(backend.stop, stream_id, geometry)
    except StreamNotFound:
        return text(404, f"Stream ID {shown_id(stream_id)} not found")
    return Response(jpeg_bytes, media_type="image/jpeg")


@router.post(
    "/stop",
    responses={
        200: {"description": "Each stream that was running, and what became of it."},
        500: SERVER_ERROR,
    },
)
async def stop_all(backend: Backend) -> Stopped:
    return Stopped(results=await run_in_threadpool(backend.stop_all))
