from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr

from ..core.geometry import MAX_CELLS, MAX_TILE, MIN_TILE, GridGeometry
from ..core.models import (
    INTERVAL_DEFAULT,
    INTERVAL_MAX,
    INTERVAL_MIN,
    STREAM_ID_RE,
    TOP_K_DEFAULT,
    TOP_K_MAX,
    TOP_K_MIN,
)
from ..core.settings import CommonSettings
from .sampling import DecodeMode

# The worker's packet reader (capture/source.py): our RTSP client with its C
# receive loop, FFmpeg's RTSP driven from C, PyAV's demux, or the first of
# these that can read the camera.
Demuxer = Literal["auto", "rtp", "pyav"]


class CaptureSettings(CommonSettings):
    """One stream's worker; every field is ``STREAMGRID_<NAME>`` in the environment."""

    # Every name the CRD accepts (an RFC 1123 label) matches; so does the gateway's hex.
    stream_id: str = Field(pattern=STREAM_ID_RE.pattern)
    source_url: SecretStr
    capture_interval: float = Field(INTERVAL_DEFAULT, ge=INTERVAL_MIN, le=INTERVAL_MAX)
    top_k: int = Field(TOP_K_DEFAULT, ge=TOP_K_MIN, le=TOP_K_MAX)
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    # rtsps://: check the camera's certificate against the system's CAs, or the
    # PEM bundle in tls_ca_file (capture/tls.py); false accepts any certificate.
    tls_verify: bool = True
    tls_ca_file: Path | None = None
    open_timeout: float = Field(10.0, gt=0, le=120)  # connect + DESCRIBE/SETUP + probe
    read_timeout: float = Field(5.0, gt=0, le=120)  # no packet at all for this long
    no_frame_timeout: float = Field(10.0, gt=0, le=600)  # packets but no picture
    backoff_initial: float = Field(0.5, gt=0, le=60)
    backoff_max: float = Field(30.0, gt=0, le=3600)
    manifest_interval: float = Field(5.0, gt=0, le=3600)
    jpeg_quality: int = Field(90, ge=10, le=100)
    # The count the runtime last saw (embedded: the gateway's records; cluster:
    # the VideoStream's status): a restarted worker never counts below it.
    frames_captured_floor: int = Field(0, ge=0)
    # The embedded server's pid: the worker asks for SIGTERM when it dies (a
    # killed server leaves no orphan), and exits if it is already gone.
    parent_pid: int | None = None
    probe_seconds: float = Field(0.5, ge=0, le=10)  # FFmpeg's analyzeduration at connect
    # auto: decode only keyframes when the interval is at least a GOP, else only
    # the packets up to each tick (see capture/sampling.py); all: decode all.
    decode_mode: DecodeMode = DecodeMode.AUTO
    # rtp: our RTSP client and C receive loop (capture/rtp.py; H.264/H.265 over
    # TCP); pyav: PyAV's demux; auto: rtp where the camera allows, else pyav.
    demuxer: Demuxer = "auto"
    decode_threads: int = Field(1, ge=0, le=16)  # 0: FFmpeg picks
    # The liveness endpoint (capture/health.py): off unless a port is set (0:
    # any free one). A pod binds every address: the kubelet probes its IP.
    health_port: int | None = Field(None, ge=0, le=65535)
    health_host: str = "0.0.0.0"
    # -- the grid at stop (cluster) -------------------------------------------
    # The stream's own geometry (VideoStream spec.grid). With grid_at_stop, a
    # graceful stop composes that grid from the stored top K and stores it, so
    # a kubectl user finds it named in status.grid. The operator turns it on;
    # the embedded gateway composes at /stop from the same directory anyway.
    grid_at_stop: bool = False
    grid_columns: int | None = Field(None, ge=1, le=MAX_CELLS)
    grid_tile_width: int = Field(300, ge=MIN_TILE, le=MAX_TILE)
    grid_tile_height: int = Field(300, ge=MIN_TILE, le=MAX_TILE)
    progress: Literal["stdout", "none", "kube"] = "stdout"
    progress_interval: float = Field(5.0, ge=0.5, le=300)  # kube: seconds between PATCHes
    # In a pod, credentials come from the stream's Secret, never from the spec.
    source_username: SecretStr | None = None
    source_password: SecretStr | None = None
    source_full_url: SecretStr | None = None  # the Secret's `url` key, when set
    kube_namespace: str | None = None
    kube_name: str | None = None
    kube_api_url: str | None = None  # default: the in-cluster service
    kube_token_file: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    kube_ca_file: Path | None = Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    # auto: with S3 keys set, the small standard-library client (core/stores/s3lite.py;
    # ~20 MB less per pod than boto3), else boto3 and its credential chain.
    s3_client: Literal["auto", "boto3"] = "auto"

    def lite_s3_client(self) -> bool:
        return self.s3_client == "auto"

    def camera_url(self) -> str:
        """The URL to open: the Secret's whole URL, or the spec's with its user."""
        if self.source_full_url and self.source_full_url.get_secret_value():
            return self.source_full_url.get_secret_value()
        url = self.source_url.get_secret_value()
        if not self.source_username or not self.source_username.get_secret_value():
            return url
        user = quote(self.source_username.get_secret_value(), safe="")
        password = self.source_password.get_secret_value() if self.source_password else ""
        userinfo = f"{user}:{quote(password, safe='')}" if password else user
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{userinfo}@{rest}"

    def grid_geometry(self) -> GridGeometry:
        """The stream's own grid geometry (its default grid)."""
        return GridGeometry(self.grid_columns, self.grid_tile_width, self.grid_tile_height)
