"""``GET /list``: the spec's answer, fast at fleet size, with optional pages.

Without ``limit`` the answer is the spec's, every stream not stopped. With
``limit`` (an extension, as Kubernetes lists do) at most that many, sorted by
id, and ``continue`` names where the next page starts (absent on the last).
A stream started or stopped between pages is on a page or not as it sorts;
none is listed twice.

The body is written by hand from each stream's fields: at 10,000 streams
FastAPI's generic encoder took longer than everything else together.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from .backend import StreamInfo
from .requests import BadRequest, reason, validated

MAX_LIMIT = 10_000
MAX_TOKEN = 512  # characters of a continue token


class ListQuery(BaseModel):
    """``?limit=&continue=``: a page of at most ``limit``, after the id that
    ``continue`` names (its token decoded)."""

    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] | SkipJsonSchema[None] = Field(
        None,
        description="At most this many streams, sorted by id (an extension; without "
        "it every stream not stopped is listed).",
    )
    # The token as the document has it; the id it names once validated.
    after: Annotated[str, Field(max_length=MAX_TOKEN)] | SkipJsonSchema[None] = Field(
        None,
        alias="continue",
        description="Where the next page starts: the `continue` of the page before.",
    )

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, raw: Any) -> int:
        text = str(raw)
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise reason(f"Invalid request: limit must be a whole number 1-{MAX_LIMIT}")
        return int(text)

    @field_validator("after", mode="before")
    @classmethod
    def _after(cls, raw: Any) -> str | None:
        try:
            return decode_token(str(raw)) if raw else None
        except BadRequest as exc:
            raise reason(str(exc)) from None


def page_params(query: Mapping[str, str]) -> tuple[int | None, str | None]:
    """(limit, the id to start after) from ``?limit=&continue=``; BadRequest."""
    page = validated(ListQuery, query)
    return page.limit, page.after


def encode_token(stream_id: str) -> str:
    return base64.urlsafe_b64encode(stream_id.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    try:
        if len(token) > MAX_TOKEN:
            raise ValueError("too long")
        padded = token + "=" * (-len(token) % 4)
        raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
        if not raw:
            raise ValueError("empty")
        return raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError):
        raise BadRequest("Invalid request: continue is not a token this server gave") from None


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One stream's /list entry, encoded but for its running time (which
    moves with the clock while it runs): a backend can keep these per
    version of a stream and not redo the work at each request."""

    stream_id: str
    head: str  # "<id>":{"frames_captured":N,"url":"...","running_time":
    tail: str  # ,"state":"Active"}
    started_at: float
    ended_at: float | None  # set: the running time is frozen (stopped, failed)

    def render(self, now: float) -> str:
        end = self.ended_at if self.ended_at is not None else now
        return f"{self.head}{round(max(0.0, end - self.started_at), 1)!r}{self.tail}"


def entry_of(info: StreamInfo, live: bool = False) -> ListEntry:
    """``live``: the running time is the clock's at render time minus
    ``info.started_at`` (a stream still running, entry kept a while);
    otherwise it is ``info.running_time`` as the info says."""
    dumps = json.dumps
    head = (
        f'{dumps(info.stream_id)}:{{"frames_captured":{int(info.frames_captured)},'
        f'"url":{dumps(info.url)},"running_time":'
    )
    tail = f',"state":{dumps(info.state.value)}}}'
    ended_at = None if live else info.started_at + info.running_time
    return ListEntry(info.stream_id, head, tail, info.started_at, ended_at)


def select(
    entries: list[ListEntry], limit: int | None, after: str | None
) -> tuple[list[ListEntry], str | None]:
    """The page, and the token of the next one (None: this is the last)."""
    if limit is None and after is None:
        return entries, None
    ordered = sorted(entries, key=lambda entry: entry.stream_id)
    if after is not None:
        ordered = [entry for entry in ordered if entry.stream_id > after]
    if limit is None or len(ordered) <= limit:
        return ordered, None
    chosen = ordered[:limit]
    return chosen, encode_token(chosen[-1].stream_id)


def encode_list(entries: list[ListEntry], now: float, next_token: str | None = None) -> bytes:
    """``{"active_streams": {id: {frames_captured, url, running_time, state}}}``
    (StreamInfo.list_entry's fields, in its order), and ``continue``."""
    parts = []
    for entry in entries:  # render(), inlined: 10,000 method calls cost more than the work
        end = now if entry.ended_at is None else entry.ended_at
        parts.append(f"{entry.head}{round(max(0.0, end - entry.started_at), 1)!r}{entry.tail}")
    body = ",".join(parts)
    tail = f',"continue":{json.dumps(next_token)}' if next_token is not None else ""
    return f'{{"active_streams":{{{body}}}{tail}}}'.encode()
