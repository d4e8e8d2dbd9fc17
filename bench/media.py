"""Test media for the benchmarks: textured, moving, camera-like encodes.

testsrc2 (moving shapes, counters) with temporal noise, so every frame
carries detail like a real sensor; H.264 High without B-frames or H.265,
fixed GOP, constant bitrate: what IP cameras send.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MediaSpec:
    height: int
    codec: str  # h264 | h265
    gop_seconds: int
    fps: int = 25

    @property
    def width(self) -> int:
        return self.height * 16 // 9

    @property
    def name(self) -> str:
        return f"{self.height}p-{self.codec}-gop{self.gop_seconds}"

    @property
    def bitrate(self) -> str:
        return {720: "2500k", 1080: "4500k"}.get(self.height, "2000k")


def generate(spec: MediaSpec, seconds: int, cache: Path) -> Path:
    """Encodes once; later runs reuse the file (same spec and length)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{spec.name}-{seconds}s.mkv"
    if path.exists() and path.stat().st_size > 0:
        return path
    gop = spec.gop_seconds * spec.fps
    codec_args = (
        ["-c:v", "libx264", "-profile:v", "high", "-bf", "0", "-preset", "veryfast"]
        if spec.codec == "h264"
        else [
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            f"bframes=0:keyint={gop}:min-keyint={gop}:log-level=error",
        ]
    )
    tmp = path.with_suffix(".part.mkv")
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={spec.width}x{spec.height}:rate={spec.fps}",
            "-vf",
            "noise=alls=12:allf=t+u",
            "-t",
            str(seconds),
            *codec_args,
            "-g",
            str(gop),
            "-keyint_min",
            str(gop),
            "-sc_threshold",
            "0",
            "-b:v",
            spec.bitrate,
            "-maxrate",
            spec.bitrate,
            "-bufsize",
            spec.bitrate,
            "-pix_fmt",
            "yuv420p",
            str(tmp),
        ],
        check=True,
    )
    tmp.rename(path)
    return path
