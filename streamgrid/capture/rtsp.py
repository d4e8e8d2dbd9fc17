"""RtspSession: the RTSP conversation for one camera, over TCP, in plain Python.

The data comes back on the same TCP connection, interleaved (RFC 2326 10.12),
and is read in C (``_rtp.c``, behind ``RtpPackets``). What is here runs a few
times per connection: DESCRIBE (with Basic or Digest authentication), SETUP of
the first H.264 or H.265 video stream, PLAY, a keep-alive within the session's
timeout, TEARDOWN. Anything this client does not handle (another codec, an
interleaved packetization mode, a redirect) raises ``Unsupported`` before any
data flows, and the caller reads that camera with FFmpeg instead.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

USER_AGENT = "streamgrid"
MAX_HEADER = 64 * 1024
MAX_BODY = 1024 * 1024
DEFAULT_SESSION_TIMEOUT = 60.0


class RtspError(OSError):
    """The camera answered with an error status, or not as RTSP."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RtspAuthError(RtspError):
    """401 or 403: retrying with the same credentials will not help."""


class Unsupported(Exception):
    """A camera this client does not read; FFmpeg's RTSP client can."""


class NoVideo(Exception):
    """The camera's session description has no video."""


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


@dataclass
class VideoTrack:
    """The video stream chosen from the session description."""

    control: str  # the URL to SETUP
    session_url: str  # the URL to PLAY, keep alive and TEARDOWN (aggregate control)
    payload_type: int
    codec: str  # "h264" | "hevc"
    clock_rate: int
    extradata: bytes  # parameter sets from the SDP, Annex B


@dataclass
class Credentials:
    user: str
    password: str
    nonce_count: int = 0
    challenge: dict[str, str] = field(default_factory=dict)
    scheme: str = ""


def split_url(url: str) -> tuple[str, str, int, Credentials | None]:
    """(the URL without credentials, host, port, credentials)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "rtsp" or not parts.hostname:
        raise Unsupported(f"not an rtsp:// URL: {parts.scheme}")
    host = parts.hostname
    port = parts.port or 554
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    creds = None
    if parts.username is not None:
        creds = Credentials(unquote(parts.username), unquote(parts.password or ""))
    return clean, host, port, creds


def _auth_params(text: str) -> dict[str, str]:
    return {
        k.lower(): v1 if v1 else v2
        for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', text)
    }


def choose_challenge(values: list[str]) -> tuple[str, dict[str, str]]:
    """The strongest scheme offered in WWW-Authenticate: Digest (MD5), else Basic."""
    offered = {}
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        offered[scheme.lower()] = _auth_params(rest)
    digest = offered.get("digest")
    if digest is not None and digest.get("algorithm", "MD5").upper() == "MD5":
        return "digest", digest
    if "basic" in offered:
        return "basic", offered["basic"]
    raise Unsupported("authentication scheme not supported: " + ", ".join(offered))


def authorization(creds: Credentials, method: str, uri: str, cnonce: str = "") -> str:
    if creds.scheme == "basic":
        token = base64.b64encode(f"{creds.user}:{creds.password}".encode()).decode()
        return f"Basic {token}"
    c = creds.challenge
    realm, nonce = c.get("realm", ""), c.get("nonce", "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{creds.user}:{realm}:{creds.password}")
    ha2 = md5(f"{method}:{uri}")
    fields = f'username="{creds.user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    qops = [q.strip() for q in c.get("qop", "").split(",") if q.strip()]
    if "auth" in qops:
        creds.nonce_count += 1
        nc, cnonce = f"{creds.nonce_count:08x}", cnonce or os.urandom(8).hex()
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    fields += f', response="{response}"'
    if "opaque" in c:
        fields += f', opaque="{c["opaque"]}"'
    return f"Digest {fields}, algorithm=MD5"


def _annexb(*units: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + u for u in units if u)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return b""


def parse_sdp(sdp: str, base: str) -> VideoTrack:
    """The first video stream of the session description, if this client reads it."""
    session_control = ""
    media: list[list[str]] = []
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        elif line.startswith("a=control:"):
            session_control = line[len("a=control:") :]
    videos = [m for m in media if m[0].startswith("m=video ")]
    if not videos:
        raise NoVideo("the source has no video stream")
    lines = videos[0]
    fields = lines[0].split()
    if len(fields) < 4 or fields[2] != "RTP/AVP":
        raise Unsupported(f"video transport {' '.join(fields[2:3])}")
    payload_type = int(fields[3])
    rtpmap = fmtp = control = ""
    for line in lines[1:]:
        if line.startswith(f"a=rtpmap:{payload_type} "):
            rtpmap = line.split(" ", 1)[1]
        elif line.startswith(f"a=fmtp:{payload_type} "):
            fmtp = line.split(" ", 1)[1]
        elif line.startswith("a=control:"):
            control = line[len("a=control:") :]
    encoding, _, rate = rtpmap.partition("/")
    codec = {"H264": "h264", "H265": "hevc"}.get(encoding.upper())
    if codec is None:
        raise Unsupported(f"video codec {encoding or 'unknown'}")
    params = {}
    for item in fmtp.split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            params[key.lower()] = value.strip()
    if codec == "h264":
        if params.get("packetization-mode", "0") not in ("0", "1"):
            raise Unsupported("H.264 interleaved packetization")
        sets = params.get("sprop-parameter-sets", "")
        extradata = _annexb(*(_b64(s) for s in sets.split(",") if s))
    else:
        if int(params.get("sprop-max-don-diff", "0") or 0) > 0:
            raise Unsupported("H.265 with decoding order numbers")
        extradata = _annexb(
            *(_b64(params.get(k, "")) for k in ("sprop-vps", "sprop-sps", "sprop-pps"))
        )
    return VideoTrack(
        control=_resolve(base, control or session_control),
        session_url=_resolve(base, session_control),
        payload_type=payload_type,
        codec=codec,
        clock_rate=int(rate.split("/")[0] or 90000),
        extradata=extradata,
    )


def _resolve(base: str, control: str) -> str:
    if not control or control == "*":
        return base
    if control.lower().startswith("rtsp://"):
        return control
    return base.rstrip("/") + "/" + control.lstrip("/")


class RtspSession:
    """One RTSP connection over TCP; ``start()`` leaves it playing."""

    def __init__(self, url: str, open_timeout: float, read_timeout: float) -> None:
        self.url, self.host, self.port, self.creds = split_url(url)
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.sock: socket.socket | None = None
        self._buffer = b""
        self._cseq = 0
        self._deadline = 0.0
        self.session = ""
        self.session_timeout = DEFAULT_SESSION_TIMEOUT
        self.keepalive_method = "OPTIONS"
        self.track: VideoTrack | None = None
        self.channel = 0
        self._last_request = 0.0

    # -- the conversation ---------------------------------------------------
    def start(self) -> bytes:
        """DESCRIBE, SETUP, PLAY; returns the bytes read past PLAY's answer (the
        first data, which the reader must see first)."""
        self._deadline = time.monotonic() + self.open_timeout
        self.sock = socket.create_connection((self.host, self.port), timeout=self._remaining())
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        options = self.request("OPTIONS", self.url)
        public = (options.header("Public") or "").upper()
        if "GET_PARAMETER" in public:
            self.keepalive_method = "GET_PARAMETER"
        described = self.request("DESCRIBE", self.url, {"Accept": "application/sdp"})
        base = described.header("Content-Base") or described.header("Content-Location") or self.url
        self.track = parse_sdp(described.body.decode("utf-8", "replace"), base)
        setup = self.request(
            "SETUP",
            self.track.control,
            {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"},
        )
        self._take_session(setup)
        transport = setup.header("Transport") or ""
        match = re.search(r"interleaved=(\d+)", transport)
        if "TCP" not in transport.upper() or not match:
            raise Unsupported(f"the camera did not agree to TCP interleaving ({transport})")
        self.channel = int(match.group(1))
        self.request("PLAY", self.track.session_url, {"Range": "npt=0.000-"})
        self.sock.settimeout(self.read_timeout)  # for keep-alives from now on
        ahead, self._buffer = self._buffer, b""
        return ahead

    def _take_session(self, response: Response) -> None:
        value = response.header("Session")
        if not value:
            raise RtspError("SETUP answered without a session")
        session, *params = (p.strip() for p in value.split(";"))
        self.session = session
        for param in params:
            key, _, number = param.partition("=")
            if key.lower() == "timeout" and number.strip().isdigit():
                self.session_timeout = max(2.0, float(number))

    def keepalive_due(self, now: float) -> bool:
        return now - self._last_request >= self.session_timeout / 2

    def send_keepalive(self) -> None:
        """Within the session's timeout, or the camera ends it. The answer comes
        back interleaved with the data; the reader skips it."""
        self._send(self.keepalive_method, self._session_url(), {})

    def close(self) -> None:
        sock = self.sock
        if sock is None:
            return
        if self.session:
            try:
                sock.settimeout(0.5)
                self._send("TEARDOWN", self._session_url(), {})
            except OSError:
                pass  # going away anyway
        self.sock = None
        sock.close()

    def _session_url(self) -> str:
        return self.track.session_url if self.track is not None else self.url

    def interrupt(self) -> None:
        """From another thread: end a blocked handshake now."""
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- messages -----------------------------------------------------------
    def request(self, method: str, uri: str, headers: dict[str, str] | None = None) -> Response:
        response = self._exchange(method, uri, headers or {})
        values = response.headers.get("www-authenticate", [])
        if response.status == 401 and self.creds is not None and values:
            scheme, challenge = choose_challenge(values)
            # Answer a first challenge, or a Digest nonce gone stale; a second
            # refusal of the same credentials is final.
            if not self.creds.scheme or challenge.get("stale", "").lower() == "true":
                self.creds.scheme, self.creds.challenge = scheme, challenge
                self.creds.nonce_count = 0
                response = self._exchange(method, uri, headers or {})
        if response.status in (401, 403):
            raise RtspAuthError(
                f"{method} answered {response.status} {response.reason}", response.status
            )
        if response.status in (301, 302, 303, 305, 307):
            raise Unsupported(f"redirected ({response.status})")
        if response.status == 551 and method == "OPTIONS":
            return response  # "option not supported": OPTIONS is only a courtesy
        if not 200 <= response.status < 300:
            raise RtspError(
                f"{method} answered {response.status} {response.reason}", response.status
            )
        return response

    def _exchange(self, method: str, uri: str, headers: dict[str, str]) -> Response:
        cseq = self._send(method, uri, headers)
        while True:
            response = self._read_response()
            if response.header("CSeq") in (None, str(cseq)):
                return response

    def _send(self, method: str, uri: str, headers: dict[str, str]) -> int:
        assert self.sock is not None
        self._cseq += 1
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self._cseq}", f"User-Agent: {USER_AGENT}"]
        if self.session:
            lines.append(f"Session: {self.session}")
        if self.creds is not None and self.creds.scheme:
            lines.append(f"Authorization: {authorization(self.creds, method, uri)}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._last_request = time.monotonic()
        return self._cseq

    def _read_response(self) -> Response:
        while True:
            # Data may come before an answer (after PLAY): skip whole frames.
            while self._buffer[:1] == b"$":
                if len(self._buffer) < 4:
                    break
                size = 4 + int.from_bytes(self._buffer[2:4], "big")
                if len(self._buffer) < size:
                    break
                self._buffer = self._buffer[size:]
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0 and self._buffer[:1] != b"$":
                break
            if len(self._buffer) > MAX_HEADER:
                raise RtspError("the camera's answer is not RTSP")
            self._receive()
        head, self._buffer = self._buffer[:end].decode("latin-1"), self._buffer[end + 4 :]
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("RTSP/") or not parts[1].isdigit():
            raise RtspError(f"not an RTSP answer: {status_line[:80]!r}")
        headers: dict[str, list[str]] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        length = int((headers.get("content-length") or ["0"])[0] or 0)
        if length > MAX_BODY:
            raise RtspError("the camera's answer is too large")
        while len(self._buffer) < length:
            self._receive()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, body)

    def _receive(self) -> None:
        assert self.sock is not None
        self.sock.settimeout(min(self._remaining(), self.read_timeout))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            waited = self.open_timeout - max(0.0, self._deadline - time.monotonic())
            raise TimeoutError(
                f"timed out after {waited:.1f} s (no answer from the camera)"
            ) from None
        if not data:
            raise RtspError("the camera closed the connection")
        self._buffer += data

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {self.open_timeout:.1f} s (connecting)")
        return left
