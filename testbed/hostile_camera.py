"""A scripted RTSP camera for tests: it answers each request with the raw bytes
its script gives (well-formed or not), streams scripted bytes after PLAY, and
records every request it received.

In-process (a thread on 127.0.0.1, a free port)::

    with HostileCamera(valid_camera_script()) as cam:
        RtspSession(cam.url("/x"), 5.0, 5.0).start()
        assert cam.requests()[0].method == "OPTIONS"

Or as a process, for a real worker to be pointed at::

    python -m testbed.hostile_camera --script garbage-answer-after-play

which prints ``READY port=N`` once it listens (see ``SCRIPTS``).

In an answer, ``{cseq}`` becomes the request's CSeq and ``{base}`` the camera's
own ``rtsp://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Literal, Protocol

MAX_REQUEST = 64 * 1024
PAYLOAD_TYPE = 96
CLOCK_RATE = 90000
FPS = 25
RTP_MTU = 1400
USER, PASSWORD = "admin", "Hostile-s3cret-pw"
LIVE555_REALM = "LIVE555 Streaming Media"


@dataclass
class Request:
    """One request as the camera read it."""

    connection: int  # 1 for the first TCP connection, 2 for the next...
    method: str
    uri: str
    headers: dict[str, str]  # lower-case names, the first value of each
    raw: str  # the request's head, latin-1

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Authenticator(Protocol):
    """Decides whether a request carries valid credentials; makes the 401."""

    def accepts(self, request: Request, state: dict[str, str]) -> bool: ...

    def challenge(self, state: dict[str, str]) -> str:
        """The WWW-Authenticate header line(s), CRLF-terminated."""
        ...


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def live555_digest_fields(request_text: str) -> dict[str, str] | None:
    """The Digest fields of a request as live555's RTSPServer parses them
    (parseAuthorizationHeader, live555 2020 and later): after
    ``Authorization: Digest ``, a comma-separated run of ``name="value"``
    pairs; any pair that is not quoted fails the whole header (None)."""
    start = request_text.lower().find("authorization: digest ")
    if start < 0:
        return None
    text, i = request_text[start + 22 :], 0
    fields: dict[str, str] = {}

    def skip_blanks(at: int) -> int:
        while at < len(text) and text[at] in " \t":
            at += 1
        return at

    while True:
        i = skip_blanks(i)
        end = i
        while end < len(text) and text[end] not in " \t=":
            end += 1
        name, i = text[i:end], skip_blanks(end)
        if i >= len(text) or text[i] != "=":
            return None
        i = skip_blanks(i + 1)
        if i >= len(text) or text[i] != '"':
            return None
        close = text.find('"', i + 1)
        if close < 0:
            return None
        fields[name] = text[i + 1 : close]
        i = skip_blanks(close + 1)
        if i >= len(text) or text[i] != ",":
            return fields
        i += 1


@dataclass
class Live555Digest:
    """live555's Digest check: its own realm and a fresh random nonce after
    each refusal, no qop; the header must parse as ``live555_digest_fields``."""

    user: str = USER
    password: str = PASSWORD
    realm: str = LIVE555_REALM

    def accepts(self, request: Request, state: dict[str, str]) -> bool:
        nonce = state.get("nonce")
        fields = live555_digest_fields(request.raw)
        if nonce is None or fields is None:
            return False
        needed = ("username", "realm", "nonce", "uri", "response")
        if any(k not in fields for k in needed):
            return False
        if fields["realm"] != self.realm or fields["nonce"] != nonce:
            return False
        if fields["username"] != self.user:
            return False
        ha1 = _md5(f"{self.user}:{self.realm}:{self.password}")
        ha2 = _md5(f"{request.method}:{fields['uri']}")
        return fields["response"] == _md5(f"{ha1}:{nonce}:{ha2}")

    def challenge(self, state: dict[str, str]) -> str:
        state["nonce"] = os.urandom(16).hex()
        return f'WWW-Authenticate: Digest realm="{self.realm}", nonce="{state["nonce"]}"\r\n'


@dataclass
class BasicAuth:
    """Basic, the scheme whose header carries the password itself."""

    user: str = USER
    password: str = PASSWORD
    realm: str = "hostile"

    def accepts(self, request: Request, state: dict[str, str]) -> bool:
        import base64

        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return request.header("Authorization") == f"Basic {token}"

    def challenge(self, state: dict[str, str]) -> str:
        return f'WWW-Authenticate: Basic realm="{self.realm}"\r\n'


@dataclass
class Script:
    """What the camera says. ``answers[METHOD]`` are the raw answers to that
    method's requests in turn, the last one repeating; a method the script
    does not name is answered 501 (TEARDOWN and GET_PARAMETER: 200)."""

    answers: dict[str, list[bytes]]
    after_play: Sequence[bytes] = ()  # sent after PLAY's answer, chunk by chunk
    chunk_interval: float = 0.0  # seconds between those chunks
    then: Literal["hold", "close"] = "hold"  # after the chunks: stay silent, or hang up
    auth: Authenticator | None = None  # asked of every request but OPTIONS
    loop_after_play: bool = False  # send ``after_play`` again and again


def answer(status: str, *headers: str, body: bytes = b"") -> bytes:
    """A well-formed answer (a template: CSeq is ``{cseq}``)."""
    lines = [f"RTSP/1.0 {status}", "CSeq: {cseq}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def interleaved(channel: int, payload: bytes) -> bytes:
    return b"$" + bytes([channel]) + len(payload).to_bytes(2, "big") + payload


# -- a real H.264 clip, as interleaved RTP ----------------------------------
@dataclass(frozen=True)
class Clip:
    sps: bytes
    pps: bytes
    frames: tuple[bytes, ...]  # one chunk of interleaved RTP packets per picture


def _nal_units(annexb: bytes) -> list[bytes]:
    units = []
    for part in annexb.split(b"\x00\x00\x01"):
        unit = part.rstrip(b"\x00")
        if unit:
            units.append(unit)
    return units


def _rtp_packets(units: list[bytes], seq: int, timestamp: int) -> tuple[list[bytes], int]:
    """RFC 6184 single NAL unit and FU-A packets of one access unit."""
    payloads: list[bytes] = []
    for unit in units:
        if len(unit) <= RTP_MTU:
            payloads.append(unit)
            continue
        indicator = (unit[0] & 0xE0) | 28
        rest, first = unit[1:], True
        while rest:
            piece, rest = rest[:RTP_MTU], rest[RTP_MTU:]
            header = (0x80 if first else 0) | (0x40 if not rest else 0) | (unit[0] & 0x1F)
            payloads.append(bytes([indicator, header]) + piece)
            first = False
    packets = []
    for index, payload in enumerate(payloads):
        marker = 0x80 if index == len(payloads) - 1 else 0
        head = bytes([0x80, marker | PAYLOAD_TYPE]) + (seq & 0xFFFF).to_bytes(2, "big")
        head += (timestamp & 0xFFFFFFFF).to_bytes(4, "big") + b"\x12\x34\x56\x78"
        packets.append(head + payload)
        seq += 1
    return packets, seq


@functools.cache
def h264_clip(frame_count: int = 50) -> Clip:
    """A moving 160x120 picture, one keyframe a second, encoded by libx264."""
    from fractions import Fraction

    import av
    import numpy as np

    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 160, 120, "yuv420p"
    encoder.time_base = Fraction(1, FPS)
    encoder.framerate = Fraction(FPS, 1)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(FPS), "bf": "0"}
    encoded: list[bytes] = []
    for index in range(frame_count):
        luma = np.full((120, 160), 16 + (index * 4) % 200, dtype=np.uint8)
        luma[:, (index * 3) % 160 :] = 235
        frame = av.VideoFrame.from_ndarray(luma, format="gray").reformat(format="yuv420p")
        frame.pts = index
        encoded += [bytes(p) for p in encoder.encode(frame)]
    encoded += [bytes(p) for p in encoder.encode(None)]
    sps = pps = b""
    frames, seq = [], 1000
    for index, data in enumerate(encoded):
        units = _nal_units(data)
        for unit in units:
            kind = unit[0] & 0x1F
            sps = unit if kind == 7 and not sps else sps
            pps = unit if kind == 8 and not pps else pps
        packets, seq = _rtp_packets(units, seq, index * (CLOCK_RATE // FPS))
        frames.append(b"".join(interleaved(0, p) for p in packets))
    return Clip(sps, pps, tuple(frames))


def h264_sdp(clip: Clip, rtpmap: str = f"{PAYLOAD_TYPE} H264/{CLOCK_RATE}") -> str:
    import base64

    sets = ",".join(base64.b64encode(u).decode() for u in (clip.sps, clip.pps))
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=hostile\r\nt=0 0\r\na=control:*\r\n"
        f"m=video 0 RTP/AVP {PAYLOAD_TYPE}\r\nc=IN IP4 0.0.0.0\r\n"
        f"a=rtpmap:{rtpmap}\r\n"
        f"a=fmtp:{PAYLOAD_TYPE} packetization-mode=1;sprop-parameter-sets={sets}\r\n"
        "a=control:track1\r\n"
    )


def valid_answers(sdp: str | None = None) -> dict[str, list[bytes]]:
    """What a well-behaved H.264 camera answers (the clip's description)."""
    body = (sdp if sdp is not None else h264_sdp(h264_clip())).encode("latin-1")
    return {
        "OPTIONS": [answer("200 OK", "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN")],
        "DESCRIBE": [
            answer(
                "200 OK",
                "Content-Type: application/sdp",
                "Content-Base: {base}/x/",
                body=body,
            )
        ],
        "SETUP": [
            answer(
                "200 OK",
                "Transport: RTP/AVP/TCP;unicast;interleaved=0-1",
                "Session: 12345678;timeout=60",
            )
        ],
        "PLAY": [answer("200 OK", "Session: 12345678", "Range: npt=0.000-")],
    }


def valid_camera_script(**changes: object) -> Script:
    """A camera that works: the clip, a picture every 1/25 s, forever."""
    values: dict[str, object] = {
        "answers": valid_answers(),
        "after_play": h264_clip().frames,
        "chunk_interval": 1 / FPS,
        "loop_after_play": True,
    }
    values.update(changes)
    return Script(**values)  # type: ignore[arg-type]


def clip_then(hostile: bytes, pictures: int = 25) -> list[bytes]:
    """A second of valid pictures, then ``hostile`` (then silence)."""
    return [*h264_clip().frames[:pictures], hostile]


# -- the server ---------------------------------------------------------------
@dataclass
class HostileCamera:
    script: Script
    port: int = 0
    requests_log: list[Request] = field(default_factory=list)
    record_path: Path | None = None  # also appended here as JSON lines

    def __post_init__(self) -> None:
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._count = 0

    # -- life -------------------------------------------------------------
    def start(self) -> HostileCamera:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.1)  # accept() polls: closing the socket would not wake it
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        thread = threading.Thread(target=self._accept, name="hostile-camera", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5.0)

    def __enter__(self) -> HostileCamera:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}"

    def url(self, path: str = "/x", user: str | None = None, password: str | None = None) -> str:
        userinfo = ""
        if user is not None:
            userinfo = user + (f":{password}" if password is not None else "") + "@"
        return f"rtsp://{userinfo}127.0.0.1:{self.port}{path}"

    def requests(self) -> list[Request]:
        with self._lock:
            return list(self.requests_log)

    def connections(self) -> int:
        with self._lock:
            return self._count

    # -- serving ----------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self._count += 1
                number = self._count
                self._connections.append(conn)
            thread = threading.Thread(
                target=self._serve, args=(conn, number), name=f"hostile-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket, number: int) -> None:
        send_lock = threading.Lock()
        state: dict[str, str] = {}
        seen: dict[str, int] = {}
        buffer = b""
        try:
            while not self._stopping.is_set():
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_REQUEST:
                        return
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                    continue
                head, buffer = buffer[:end].decode("latin-1"), buffer[end + 4 :]
                request = _parse_request(number, head)
                length = request.header("Content-Length") or "0"
                skip = int(length) if length.isascii() and length.isdigit() else 0
                while len(buffer) < skip:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                buffer = buffer[skip:]
                self._record(request)
                reply = self._reply(request, state, seen)
                with send_lock:
                    conn.sendall(reply)
                if request.method == "PLAY" and reply.startswith(b"RTSP/1.0 200"):
                    streamer = threading.Thread(
                        target=self._stream, args=(conn, send_lock), daemon=True
                    )
                    streamer.start()
        except OSError:
            return
        finally:
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            conn.close()

    def _reply(self, request: Request, state: dict[str, str], seen: dict[str, int]) -> bytes:
        cseq = request.header("CSeq") or "0"
        auth = self.script.auth
        if auth is not None and request.method != "OPTIONS" and not auth.accepts(request, state):
            return (
                f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\n{auth.challenge(state)}\r\n"
            ).encode("latin-1")
        answers = self.script.answers.get(request.method)
        if not answers:
            if request.method in ("TEARDOWN", "GET_PARAMETER"):
                answers = [answer("200 OK", "Session: 12345678")]
            else:
                answers = [answer("501 Not Implemented")]
        turn = seen.get(request.method, 0)
        seen[request.method] = turn + 1
        template = answers[min(turn, len(answers) - 1)]
        return template.replace(b"{cseq}", cseq.encode("latin-1")).replace(
            b"{base}", self.base.encode()
        )

    def _stream(self, conn: socket.socket, send_lock: threading.Lock) -> None:
        script = self.script
        try:
            while not self._stopping.is_set():
                for chunk in script.after_play:
                    if self._stopping.wait(script.chunk_interval):
                        return
                    with send_lock:
                        conn.sendall(chunk)
                if not script.loop_after_play or not script.after_play:
                    break
            if script.then == "close":
                conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            return

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests_log.append(request)
            if self.record_path is not None:
                with self.record_path.open("a") as out:
                    out.write(json.dumps(asdict(request)) + "\n")


def _parse_request(connection: int, head: str) -> Request:
    request_line, *lines = head.split("\r\n")
    method, _, rest = request_line.partition(" ")
    uri = rest.rsplit(" ", 1)[0]
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return Request(connection, method, uri, headers, head)


# -- named scripts, for ``python -m testbed.hostile_camera`` -----------
def _garbage_answer_after_play() -> Script:
    """An interleaved "answer" with an empty status and 300 KB of digits."""
    return valid_camera_script(
        after_play=clip_then(b"RTSP/1.0 \r\n\r\n" + b"7" * 300_000),
        loop_after_play=False,
    )


def _negative_length_after_play() -> Script:
    return valid_camera_script(
        after_play=clip_then(b"RTSP/1.0 200 OK\r\nCSeq: 99\r\nContent-Length: -40\r\n\r\n"),
        loop_after_play=False,
    )


def _huge_length_after_play() -> Script:
    return valid_camera_script(
        after_play=clip_then(
            b"RTSP/1.0 200 OK\r\nCSeq: 99\r\nContent-Length: 99999999999999999999\r\n\r\n"
        ),
        loop_after_play=False,
    )


SCRIPTS: dict[str, Callable[[], Script]] = {
    "camera": valid_camera_script,
    "digest": lambda: valid_camera_script(auth=Live555Digest()),
    "garbage-answer-after-play": _garbage_answer_after_play,
    "negative-length-after-play": _negative_length_after_play,
    "huge-length-after-play": _huge_length_after_play,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--script", choices=sorted(SCRIPTS), default="camera")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", type=Path, help="append each request here as a JSON line")
    args = parser.parse_args(argv)
    camera = HostileCamera(SCRIPTS[args.script](), port=args.port, record_path=args.record)
    camera.start()
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"READY port={camera.port}", flush=True)
    while not stop.wait(0.5):
        pass
    camera.stop()
    return 0


def iter_requests(path: Path) -> Iterator[Request]:
    """The requests a camera process recorded with ``--record``."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        yield Request(**json.loads(line))


if __name__ == "__main__":
    sys.exit(main())
