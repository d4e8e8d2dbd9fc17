"""The live dashboard: its page at ``/`` and the reads it polls (the page,
thumbnails and ETags are gateway/dashboard.py's)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..dashboard import THUMB_CACHE, etag_matches, frame_name, frames_json, render_page, thumbnail
from ..deps import Backend
from ..errors import shown_id, text
from ..openapi import IMAGE_FAILED, SERVER_ERROR, STORE_UNREADABLE, jpeg, plain
from ..schemas import KeptFrames, Streams

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(render_page(), headers={"Cache-Control": "no-cache"})


@router.get(
    "/streams",
    response_model=Streams,
    responses={
        200: {
            "description": "Every stream not stopped, oldest first, each with everything known "
            "about it, as `GET /streams/{stream_id}` has it (an extension: the dashboard "
            "polls it)."
        },
        500: SERVER_ERROR,
    },
)
async def streams(backend: Backend) -> Response:
    """Extension: every stream not stopped, with its details."""
    infos = await run_in_threadpool(backend.active)
    infos.sort(key=lambda i: (i.started_at, i.stream_id))
    return JSONResponse({"now": time.time(), "streams": [i.to_json() for i in infos]})


@router.get(
    "/streams/{stream_id}/frames",
    response_model=KeptFrames,
    responses={
        200: {
            "description": "The stream's kept frames as its store holds them now, brightest "
            "first (an extension). `key` names a frame for good: a new key at a rank is a new "
            "frame."
        },
        404: plain("`Stream not found with id <stream_id>`."),
        500: SERVER_ERROR,
        503: STORE_UNREADABLE,
    },
)
async def frames(stream_id: str, backend: Backend) -> Response:
    """Extension: the stream's kept frames, brightest first."""
    records = await run_in_threadpool(backend.kept_frames, stream_id)
    return JSONResponse(frames_json(stream_id, records))


@router.get(
    "/streams/{stream_id}/frames/{rank:int}",
    response_class=Response,
    responses={
        200: jpeg(
            "The kept frame of this rank, scaled to 160 pixels wide (an extension). Its ETag "
            "is the frame's key: If-None-Match with it answers 304 while the rank holds the "
            "same frame.",
            headers={"ETag": {"schema": {"type": "string"}}},
        ),
        404: plain("`Stream not found with id <stream_id>`, or `No frame <rank> for stream <id>`."),
        500: IMAGE_FAILED,
        503: STORE_UNREADABLE,
    },
)
async def frame(
    stream_id: str,
    rank: Annotated[int, PathParam(ge=0, description="0 is the brightest kept frame.")],
    backend: Backend,
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Extension: one kept frame as a thumbnail, its frame key as ETag."""
    no_frame = text(404, f"No frame {rank} for stream {shown_id(stream_id)}")
    records = await run_in_threadpool(backend.kept_frames, stream_id)
    if rank >= len(records):
        return no_frame
    record = records[rank]
    etag = f'"{frame_name(stream_id, record)}"'
    headers = {"ETag": etag, "Cache-Control": THUMB_CACHE}
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    jpeg_bytes = await run_in_threadpool(backend.frame_jpeg, stream_id, record)
    if jpeg_bytes is None:  # evicted by a brighter frame since the listing
        return no_frame
    try:
        small = await run_in_threadpool(thumbnail, jpeg_bytes)
    except ValueError:
        return text(500, "Failed to create image")
    return Response(small, media_type="image/jpeg", headers=headers)
