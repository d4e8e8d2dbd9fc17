"""The live dashboard at ``/``, and the reads it polls (routes/dashboard.py).

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
from pathlib import Path
from string import Template
from typing import Any

from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..core.grid import decode_jpeg, encode_jpeg, jpeg_size, scaled
from ..core.models import FrameRecord
from ..core.stores.frames import frame_key

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


def assets() -> StaticFiles:
    """The page's scripts and styles, served under ASSETS."""
    return StaticFiles(directory=STATIC_DIR)
