"""The live dashboard at ``/``, and the reads it polls.

The page is one HTML file with a little vanilla JavaScript and CSS, all served
from ``/dashboard-assets/`` (no CDN). It polls two JSON routes every two
seconds and fetches thumbnails only when a frame's key changes:

- ``GET /streams``: every stream not stopped, with its details and the
  server's clock (ages are computed against it, not the browser's);
- ``GET /streams/<id>/frames``: the stream's kept frames, brightest first;
- ``GET /streams/<id>/frames/<rank>``: the kept frame of that rank as a small
  JPEG, with its frame key as ETag (a changed frame is a changed ETag).

Frames are read from the store, as /stop reads them, so the same page works
for the embedded and the cluster runtime. With authentication on, the page and
its assets load without a token (they hold no data); every call above needs
one, which the page asks for once and keeps in the tab's sessionStorage.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from string import Template
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..core.grid import decode_jpeg, encode_jpeg, jpeg_size, scaled
from ..core.models import FrameRecord
from ..core.stores.frames import frame_key
from .backend import StreamBackend, StreamNotFound
from .openapi import FRAME, FRAMES, STREAMS

STATIC_DIR = Path(__file__).parent / "static"  # served as they are
PAGE = Path(__file__).parent / "templates" / "dashboard.html"
ASSETS = "/dashboard-assets"
THUMB_WIDTH = 160  # pixels; the height keeps the frame's aspect
THUMB_QUALITY = 80
# Browsers may keep a thumbnail but must ask again (cheaply: 304) before use.
THUMB_CACHE = "private, no-cache"


def frame_name(stream_id: str, record: FrameRecord) -> str:
    """A kept frame's key in the store, without the stream and the folder:
    ``<seq>_<brightness>_<ms>``. It names the frame for good (its ETag)."""
    return frame_key(stream_id, record).rsplit("/", 1)[-1].removesuffix(".jpg")


def frames_json(stream_id: str, records: list[FrameRecord]) -> dict[str, Any]:
    return {
        "stream_id": stream_id,
        "frames": [
            {"rank": rank, "key": frame_name(stream_id, record), **record.to_json()}
            for rank, record in enumerate(records)
        ],
    }


def thumbnail(jpeg: bytes, width: int = THUMB_WIDTH) -> bytes:
    """A JPEG scaled down to ``width`` (never up); ValueError if it does not decode."""
    size = jpeg_size(jpeg)
    fit = (width, max(1, math.ceil(width * size[1] / size[0]))) if size and size[0] else None
    image = decode_jpeg(jpeg, fit)  # decoded at 1/2, 1/4, 1/8 scale when that is enough
    height, full_width = image.shape[:2]
    if full_width > width:
        image = scaled(image, width, max(1, round(height * width / full_width)))
    return encode_jpeg(image, THUMB_QUALITY)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110's weak comparison of an If-None-Match header with our ETag."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


@functools.cache
def render_page() -> str:
    """The page: static but for the version. It holds no stream data, so it
    may be served without a token."""
    template = Template(PAGE.read_text(encoding="utf-8"))
    return template.substitute(version=__version__, assets=ASSETS.lstrip("/"))


def install_dashboard(app: FastAPI, shown_id: Callable[[str], str]) -> None:
    """The page, its assets and the routes it polls. ``shown_id`` is how a 404
    echoes an id, as the other routes echo it."""

    def backend(request: Request) -> StreamBackend:
        b: StreamBackend = request.app.state.backend
        return b

    def not_found(stream_id: str) -> Response:
        return PlainTextResponse(f"Stream not found with id {shown_id(stream_id)}", 404)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(render_page(), headers={"Cache-Control": "no-cache"})

    @app.get("/streams", response_model=None, **STREAMS)
    async def streams(request: Request) -> dict[str, Any]:
        """Extension: every stream not stopped, with its details."""
        infos = await run_in_threadpool(backend(request).active)
        infos.sort(key=lambda i: (i.started_at, i.stream_id))
        return {"now": time.time(), "streams": [i.to_json() for i in infos]}

    @app.get("/streams/{stream_id}/frames", **FRAMES)
    async def frames(stream_id: str, request: Request) -> Response:
        """Extension: the stream's kept frames, brightest first."""
        try:
            records = await run_in_threadpool(backend(request).kept_frames, stream_id)
        except StreamNotFound:
            return not_found(stream_id)
        return JSONResponse(frames_json(stream_id, records))

    @app.get("/streams/{stream_id}/frames/{rank:int}", response_class=Response, **FRAME)
    async def frame(
        stream_id: str,
        rank: Annotated[int, PathParam(ge=0, description="0 is the brightest kept frame.")],
        request: Request,
    ) -> Response:
        """Extension: one kept frame as a thumbnail, its frame key as ETag."""
        b = backend(request)
        try:
            records = await run_in_threadpool(b.kept_frames, stream_id)
            if rank >= len(records):
                return PlainTextResponse(f"No frame {rank} for stream {shown_id(stream_id)}", 404)
            record = records[rank]
            etag = f'"{frame_name(stream_id, record)}"'
            headers = {"ETag": etag, "Cache-Control": THUMB_CACHE}
            if etag_matches(request.headers.get("if-none-match"), etag):
                return Response(status_code=304, headers=headers)
            jpeg = await run_in_threadpool(b.frame_jpeg, stream_id, record)
        except StreamNotFound:
            return not_found(stream_id)
        if jpeg is None:  # evicted by a brighter frame since the listing
            return PlainTextResponse(f"No frame {rank} for stream {shown_id(stream_id)}", 404)
        try:
            small = await run_in_threadpool(thumbnail, jpeg)
        except ValueError:
            return PlainTextResponse("Failed to create image", 500)
        return Response(small, media_type="image/jpeg", headers=headers)

    app.mount(ASSETS, StaticFiles(directory=STATIC_DIR), name="dashboard-assets")
