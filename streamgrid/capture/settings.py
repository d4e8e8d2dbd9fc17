from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from ..core.models import (
    INTERVAL_DEFAULT,
    INTERVAL_MAX,
    INTERVAL_MIN,
    TOP_K_DEFAULT,
    TOP_K_MAX,
    TOP_K_MIN,
)
from ..core.settings import CommonSettings
from .sampling import DecodeMode


class CaptureSettings(CommonSettings):
    """One stream's worker; every field is ``STREAMGRID_<NAME>`` in the environment."""

    stream_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    source_url: SecretStr
    capture_interval: float = Field(INTERVAL_DEFAULT, ge=INTERVAL_MIN, le=INTERVAL_MAX)
    top_k: int = Field(TOP_K_DEFAULT, ge=TOP_K_MIN, le=TOP_K_MAX)
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout: float = Field(10.0, gt=0, le=120)  # connect + DESCRIBE/SETUP + probe
    read_timeout: float = Field(5.0, gt=0, le=120)  # no packet at all for this long
    no_frame_timeout: float = Field(10.0, gt=0, le=600)  # packets but no picture
    backoff_initial: float = Field(0.5, gt=0, le=60)
    backoff_max: float = Field(30.0, gt=0, le=3600)
    manifest_interval: float = Field(5.0, gt=0, le=3600)
    jpeg_quality: int = Field(90, ge=10, le=100)
    probe_seconds: float = Field(0.5, ge=0, le=10)  # FFmpeg's analyzeduration at connect
    # auto: decode only keyframes when the interval is at least a GOP, else only
    # the packets up to each tick (see capture/sampling.py); all: decode all.
    decode_mode: DecodeMode = DecodeMode.AUTO
    decode_threads: int = Field(1, ge=0, le=16)  # 0: FFmpeg picks
    progress: Literal["stdout", "none"] = "stdout"
