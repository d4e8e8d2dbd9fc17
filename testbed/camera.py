"""The GStreamer RTSP test camera (streamgrid/camera/gst_camera.py) as a fixture."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streamgrid.cli import CAMERA_SCRIPT, SYSTEM_PYTHON

from .processes import ManagedProcess, free_port

LEVELS = [20, 200, 60, 240, 100, 160, 40, 220, 80, 180, 120, 140]
PERIOD = 0.5  # seconds per level
USER, PASSWORD = "viewer", "Ca5e-s3cret-pw"


@dataclass
class Camera:
    process: ManagedProcess
    port: int
    secure_port: int
    levels: list[int] = field(default_factory=lambda: list(LEVELS))
    period: float = PERIOD
    host: str = "127.0.0.1"

    def url(self, path: str = "/gray") -> str:
        return f"rtsp://{self.host}:{self.port}{path}"

    def secure_url(self, path: str = "/gray", password: str = PASSWORD) -> str:
        return f"rtsp://{USER}:{password}@{self.host}:{self.secure_port}{path}"

    def level_at(self, unix_time: float) -> int:
        return self.levels[int(unix_time // self.period) % len(self.levels)]

    def near_level(self, brightness: float, at: float, tolerance: float = 2.0) -> bool:
        """Whether a score matches the level shown at ``at`` (or just before,
        for a sample taken right after a level change)."""
        return any(
            abs(brightness - self.level_at(at - lag)) <= tolerance for lag in (0, 0.1, 0.2, 0.3)
        )

    def start(self) -> Camera:
        self.process.start()
        self.process.wait_for_log("READY", 20)
        return self

    def stop(self) -> None:
        self.process.stop()


def make_camera(
    log_dir: Path,
    port: int | None = None,
    name: str = "camera",
    host: str = "127.0.0.1",
    extra: Sequence[str] = (),
) -> Camera:

    port = port or free_port()
    secure_port = free_port()
    argv = [
        SYSTEM_PYTHON,
        str(CAMERA_SCRIPT),
        "--port",
        str(port),
        "--secure-port",
        str(secure_port),
        "--levels",
        ",".join(map(str, LEVELS)),
        "--period",
        str(PERIOD),
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--host",
        host,
        *extra,
    ]
    process = ManagedProcess(name, argv, log_dir / f"{name}-{port}.log")
    return Camera(process, port, secure_port, host=host)
