"""mediamtx, an RTSP server we did not write, with ffmpeg publishing into it.

The binary is built by tools/mediamtx/build.sh (``make interop-tools``) into
~/.cache/streamgrid/mediamtx/bin; a missing one fails the fixture. Each server
listens on 127.0.0.1 only (RTSP over TCP; RTMP, HLS, WebRTC, SRT, UDP off).
"""

from __future__ import annotations

import json
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .processes import ManagedProcess, free_port, wait_until

USER, PASSWORD = "viewer", "Mtx-s3cret-pw"
# Paths anyone on 127.0.0.1 may read; others need USER's password.
PUBLIC_PREFIX = "pub-"
SECURE_PATH = "secure"
AuthMethod = Literal["basic", "digest"]


def mediamtx_binary() -> Path:
    """Where tools/mediamtx/build.sh puts it (same environment variables)."""
    configured = os.environ.get("MEDIAMTX_BIN_DIR")
    if configured:
        return Path(configured) / "mediamtx"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "streamgrid" / "mediamtx" / "bin" / "mediamtx"


def describe(port: int, path: str, timeout: float = 3.0) -> tuple[int, str]:
    """(status, SDP) of an unauthenticated DESCRIBE; a probe independent of the
    client under test."""
    url = f"rtsp://127.0.0.1:{port}/{path}"
    request = f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, body.decode("utf-8", "replace")


def config(port: int, auth: AuthMethod, udp_only: bool = False) -> dict[str, object]:
    """mediamtx's YAML configuration (written as JSON, which is YAML). By default
    RTP over TCP only (no UDP listeners at all); ``udp_only`` refuses TCP for
    reading (461 Unsupported transport), as VLC and some encoders do."""
    udp: dict[str, object] = {}
    if udp_only:
        # RTP's port must be even; Linux hands bind(0) odd ports, so: the next two.
        found = free_port(also_free=(1, 2))
        rtp_port = found + 1 if found % 2 else found

        udp = {"rtpAddress": f"127.0.0.1:{rtp_port}", "rtcpAddress": f"127.0.0.1:{rtp_port + 1}"}
    return {
        "logLevel": "info",
        "logDestinations": ["stdout"],
        "rtsp": True,
        "rtspAddress": f"127.0.0.1:{port}",
        "rtspTransports": ["udp"] if udp_only else ["tcp"],
        **udp,
        "rtspEncryption": "no",
        "rtspAuthMethods": [auth],
        "rtmp": False,
        "hls": False,
        "webrtc": False,
        "srt": False,
        "api": False,
        "metrics": False,
        "pprof": False,
        "playback": False,
        # 4K keyframes are hundreds of RTP packets: room for a few per reader.
        "writeQueueSize": 8192,
        "authMethod": "internal",
        "authInternalUsers": [
            {
                "user": "any",
                "pass": "",
                "ips": ["127.0.0.1"],
                "permissions": [
                    {"action": "publish", "path": ""},
                    {"action": "read", "path": f"~^{PUBLIC_PREFIX}"},
                ],
            },
            {
                "user": USER,
                "pass": PASSWORD,
                "ips": ["127.0.0.1"],
                "permissions": [{"action": "read", "path": ""}],
            },
        ],
        "paths": {"all_others": {}},
    }


@dataclass
class MediaMtx:
    work: Path
    name: str
    auth: AuthMethod = "basic"
    udp_only: bool = False
    port: int = 0
    process: ManagedProcess | None = None
    publishers: dict[str, ManagedProcess] = field(default_factory=dict)
    clips: dict[str, tuple[Path, list[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    def url(self, path: str, user: str | None = None, password: str | None = None) -> str:
        credentials = f"{user}:{password}@" if user is not None else ""
        return f"rtsp://{credentials}127.0.0.1:{self.port}/{path}"

    def secure_url(self, password: str = PASSWORD) -> str:
        return self.url(SECURE_PATH, USER, password)

    @property
    def log(self) -> ManagedProcess:
        assert self.process is not None, "mediamtx was not started"
        return self.process

    def start(self) -> MediaMtx:
        binary = mediamtx_binary()
        if not binary.is_file():
            raise RuntimeError(f"{binary} is missing: run `make interop-tools`")
        self.work.mkdir(parents=True, exist_ok=True)
        config_path = self.work / f"{self.name}.yml"
        config_path.write_text(json.dumps(config(self.port, self.auth, self.udp_only), indent=1))

        log_path = self.work / f"{self.name}.log"
        # A restart appends to the log: only what this run prints counts.
        offset = log_path.stat().st_size if log_path.exists() else 0
        process = ManagedProcess(self.name, [str(binary), str(config_path)], log_path)
        self.process = process.start()
        needle = f"listener opened on 127.0.0.1:{self.port}"

        def listening() -> bool:
            if not process.alive():
                raise RuntimeError(f"{self.name} exited:\n{process.log_text()[offset:]}")
            return needle in process.log_text()[offset:]

        wait_until(listening, 20, f"{self.name} to listen on {self.port}")
        for path, (clip, extra) in self.clips.items():
            self._start_publisher(path, clip, extra)
        return self

    def publish(self, path: str, clip: Path, extra: list[str] | None = None) -> None:
        """ffmpeg sends ``clip`` in a loop, in real time, to ``path`` (restarted
        with the server by ``start()``); returns once the path can be read."""
        self.clips[path] = (clip, list(extra or []))
        self._start_publisher(path, clip, list(extra or []))

    def _start_publisher(self, path: str, clip: Path, extra: list[str]) -> None:
        argv = [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning",
            "-re", "-stream_loop", "-1", "-i", str(clip), "-map", "0", "-c", "copy", *extra,
            "-f", "rtsp", "-rtsp_transport", "udp" if self.udp_only else "tcp", self.url(path),

        ]  # fmt: skip
        publisher = ManagedProcess(
            f"{self.name}-publish-{path}", argv, self.work / f"{self.name}-publish-{path}.log"
        ).start()
        self.publishers[path] = publisher
        probe = path if path.startswith(PUBLIC_PREFIX) else None
        offset = len(self.log.log_text())  # a restart appends to the log

        def readable() -> bool:
            if not publisher.alive():
                raise RuntimeError(f"ffmpeg stopped publishing {path}:\n{publisher.log_text()}")
            if probe is None:
                return f"is publishing to path '{path}'" in self.log.log_text()[offset:]
            return describe(self.port, probe)[0] == 200

        wait_until(readable, 30, f"{path} to be published into {self.name}", step=0.1)

    def kill(self) -> None:
        """The server dies (SIGKILL, by PID); its publishers are stopped too."""
        self.log.stop(signal.SIGKILL)
        for publisher in self.publishers.values():
            publisher.stop()
        self.publishers.clear()

    def stop(self) -> None:
        for publisher in self.publishers.values():
            publisher.stop()
        self.publishers.clear()
        if self.process is not None:
            self.process.stop()
