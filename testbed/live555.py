"""live555's RTSP server (our small on-demand server on its libraries,
tools/live555/streamgrid_live555_server.cpp), serving elementary stream files.

The binary is built by tools/live555/build.sh (``make interop-tools``) into
~/.cache/streamgrid/live555/bin; a missing one fails the fixture. It listens
on 127.0.0.1 only and sends RTP interleaved on the RTSP connection. Its log
holds every request it received (RTSPServer.cpp is built with -DDEBUG).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .processes import ManagedProcess, free_port

USER, PASSWORD = "viewer", "L555-s3cret-pw"


def live555_binary() -> Path:
    """Where tools/live555/build.sh puts it (same environment variables)."""
    configured = os.environ.get("LIVE555_CACHE_DIR")
    cache = (
        Path(configured)
        if configured
        else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "streamgrid"
        / "live555"
    )
    return cache / "bin" / "streamgrid-live555-server"


@dataclass
class Live555:
    work: Path
    name: str
    files: dict[str, Path]  # stream name -> .264 / .265 file
    with_auth: bool = False
    port: int = 0
    process: ManagedProcess | None = field(default=None)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    def url(self, stream: str, password: str = PASSWORD) -> str:
        credentials = f"{USER}:{password}@" if self.with_auth else ""
        return f"rtsp://{credentials}127.0.0.1:{self.port}/{stream}"

    @property
    def log(self) -> ManagedProcess:
        assert self.process is not None, "live555 was not started"
        return self.process

    def start(self) -> Live555:
        binary = live555_binary()
        if not binary.is_file():
            raise RuntimeError(f"{binary} is missing: run `make interop-tools`")
        argv = [str(binary), str(self.port)]
        if self.with_auth:
            argv += ["--user", USER, "--password", PASSWORD]
        argv += [f"{stream}={path}" for stream, path in self.files.items()]
        self.process = ManagedProcess(self.name, argv, self.work / f"{self.name}.log").start()
        self.process.wait_for_log(f"ready on 127.0.0.1:{self.port}", 20)
        return self

    def requests_received(self, method: str) -> list[str]:
        """The ``method`` requests in its log, as it parsed them (for failure
        messages: what the server saw of our client)."""
        text = self.log.log_text()
        found = []
        for block in text.split("RTSPClientConnection[")[1:]:
            if f"{method} " in block and "read" in block and "new bytes:" in block:
                found.append(block.split("new bytes:", 1)[1].strip()[:1000])
        return found

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
