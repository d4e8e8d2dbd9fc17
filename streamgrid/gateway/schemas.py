"""The JSON answers' shapes, from which FastAPI writes their OpenAPI schemas.

The routes write these bodies themselves (StreamInfo.to_json, listing.py's
encoder: fast, and in the spec's field order); the models say what those
bodies hold, and test_openapi (Schemathesis) checks real answers against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from ..core.models import TOP_K_MAX, StreamState

MASKED = "Credentials masked."


def _no_defaults(schema: dict[str, Any]) -> None:
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class Answer(BaseModel):
    """A JSON answer's shape. A field with a default may be absent; the
    default is not a promise, so the document does not show it."""

    model_config = ConfigDict(json_schema_extra=_no_defaults)


NonNegative = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]


class Started(Answer):
    status: Literal["Video stream started"]
    stream_id: str


class Listed(Answer):
    frames_captured: NonNegative
    url: str = Field(description=MASKED)
    running_time: Seconds
    state: StreamState | SkipJsonSchema[None] = None


class StreamList(Answer):
    active_streams: dict[str, Listed]
    continue_: str | SkipJsonSchema[None] = Field(
        None,
        alias="continue",
        description="With `limit`: the token of the next page; absent on the last.",
    )


StatusLine = Annotated[str, Field(pattern="^Stream status: ")]


class StreamDetails(Answer):
    """Everything known about a stream; each runtime adds what it knows besides."""

    model_config = ConfigDict(extra="allow")

    stream_id: str
    url: str = Field(description=MASKED)
    state: StreamState
    reason: str = ""
    frames_captured: NonNegative
    running_time: Seconds
    started_at: float = 0.0
    stopped_at: float | None = None
    last_frame_at: float | None = None
    capture_interval: float = 1.0
    top_k: int = 9


class Stopped(Answer):
    results: dict[str, str]


class Health(Answer):
    status: Literal["ok"]


class Streams(Answer):
    now: float = Field(description="The server's clock, unix seconds: ages are relative to it.")
    streams: list[StreamDetails]


class KeptFrame(Answer):
    rank: NonNegative
    key: str
    seq: NonNegative
    brightness: Annotated[float, Field(ge=0, le=255)]
    captured_at: float


class KeptFrames(Answer):
    stream_id: str
    frames: Annotated[list[KeptFrame], Field(max_length=TOP_K_MAX)]
