"""Short test clips made with ffmpeg, cached by their command line.

They live in ~/.cache/streamgrid/media (``STREAMGRID_MEDIA_CACHE`` overrides),
named by a hash of the ffmpeg arguments: the same recipe is encoded once per
machine, a changed recipe makes a new file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

# A textured, moving picture (cheap to make, not trivially cheap to decode).
TESTSRC = "testsrc2=size={width}x{height}:rate={fps}"
SINE = "sine=frequency=440:sample_rate=48000"


def media_cache() -> Path:
    root = os.environ.get("STREAMGRID_MEDIA_CACHE")
    if root:
        return Path(root)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "streamgrid" / "media"


def make_clip(name: str, suffix: str, args: list[str], timeout: float = 300.0) -> Path:
    """The clip ``ffmpeg <args> <output>`` makes, encoded once and kept."""
    key = hashlib.sha256("\0".join([suffix, *args]).encode()).hexdigest()[:16]
    path = media_cache() / f"{name}-{key}{suffix}"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial{suffix}")
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    done = subprocess.run(
        [*command, str(partial)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg could not make {name}: {' '.join(command)}\n{done.stderr}")
    partial.rename(path)  # whole or not at all, even when two runs race
    return path


def video_input(width: int, height: int, fps: int, seconds: float) -> list[str]:
    source = TESTSRC.format(width=width, height=height, fps=fps)
    return ["-f", "lavfi", "-i", source, "-t", str(seconds)]


def h264_args(
    *, profile: str = "high", bframes: int = 0, gop: int = 50, preset: str = "veryfast"
) -> list[str]:
    """libx264 with a fixed GOP (no scene-cut keyframes), as cameras encode."""
    return [
        "-c:v", "libx264", "-preset", preset, "-profile:v", profile, "-pix_fmt", "yuv420p",
        "-bf", str(bframes), "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
    ]  # fmt: skip


def h265_args(*, gop: int = 50, bframes: int = 0) -> list[str]:
    params = f"log-level=error:keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
    return ["-c:v", "libx265", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-x265-params", params]
