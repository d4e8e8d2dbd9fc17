"""RtspSession: the RTSP conversation for one camera, over TCP, in plain Python.

The data comes back on the same TCP connection, interleaved (RFC 2326 10.12),
and is read in C (``_rtp.c``, behind ``RtpPackets``). What is here runs a few
times per connection: DESCRIBE (with Basic or Digest authentication), SETUP of
the first H.264 or H.265 video stream, PLAY, a keep-alive within the session's
timeout, TEARDOWN. Anything this client does not handle (another codec, an
interleaved packetization mode) raises ``Unsupported`` before any data flows,
and the caller reads that camera with FFmpeg instead.

Every byte here comes from the camera: whatever it sends, parsing raises only
``RtspError`` (retryable), ``RtspAuthError``, ``Unsupported`` or ``NoVideo``,
with a short reason. Redirects (before SETUP) are followed here, not left to
FFmpeg, so that the credentials go to no other host than the one they were
given for.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from ..core.sources import Endpoint, SourceNotAllowed, SourcePolicy
from ..core.urls import host_name_problem, mask_url
from .tls import TlsPolicy, connect_tls

USER_AGENT = "streamgrid"
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}  # RFC 2326 and IANA's rtsps

MAX_HEADER = 64 * 1024  # an answer's head
MAX_HEADER_LINES = 128
MAX_HEADER_LINE = 8 * 1024
MAX_BODY = 1024 * 1024
MAX_CLOCK_RATE = 10_000_000
DEFAULT_SESSION_TIMEOUT = 60.0
MIN_SESSION_TIMEOUT, MAX_SESSION_TIMEOUT = 2.0, 3600.0
MAX_REDIRECTS = 3
REDIRECTS = frozenset({300, 301, 302, 303, 305, 307, 308})
# Followed before SETUP. Not 305 "Use Proxy" (the Location is a proxy, not the
# stream) nor 300 "Multiple Choices": errors that say so.
FOLLOWED_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# ASCII digits only: str.isdigit() and int() also take "²" and "٩"; and few
# enough that int() never meets Python's limit on long numbers.
_NUMBER = re.compile(r"[0-9]{1,9}")
_STATUS_LINE = re.compile(r"RTSP/[0-9]\.[0-9]+ ([1-9][0-9]{2})(?:[ \t](.*))?")


class RtspError(OSError):
    """The camera answered with an error status, or not as RTSP."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RtspAuthError(RtspError):
    """401 or 403: retrying with the same credentials will not help."""


class _Redirected(RtspError):
    """OPTIONS or DESCRIBE answered 3xx; ``start()`` follows it (internal)."""

    def __init__(self, method: str, response: Response) -> None:
        super().__init__(f"{method} answered {response.status} (a redirect)", response.status)
        self.method, self.response = method, response
        self.location = response.header("Location") or ""


class Unsupported(Exception):
    """A camera this client does not read; FFmpeg's RTSP client can."""


class TransportRefused(Unsupported):
    """SETUP refused RTP over the RTSP connection (461, or another transport in
    the answer); FFmpeg over UDP may read the camera."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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

    def content_length(self) -> int:
        value = self.header("Content-Length")
        if value is None or not value:
            return 0
        if re.fullmatch(r"[0-9]+", value) is None:
            raise RtspError(f"malformed Content-Length in the camera's answer: {_shown(value)}")
        if len(value) > 9 or int(value) > MAX_BODY:
            raise RtspError("the camera's answer is too large")
        return int(value)


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


def _clean(text: str, limit: int = 60) -> str:
    """Camera text fit for a reason: printable ASCII, bounded."""
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def _shown(text: str, limit: int = 60) -> str:
    return repr(_clean(text, limit))


def _number(text: str, what: str, low: int, high: int) -> int:
    """An ASCII decimal within [low, high]; else RtspError naming ``what``."""
    text = text.strip()
    if _NUMBER.fullmatch(text) is None or not low <= int(text) <= high:
        raise RtspError(f"malformed {what} in the camera's answer: {_shown(text)}")
    return int(text)


def split_url(url: str) -> tuple[str, str, int, Credentials | None]:
    """(the URL without credentials, host, port, credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL" and the like
        # Not the exception's text: it may quote the netloc, password and all.
        raise RtspError("malformed URL (urlsplit refused it)") from None

    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise Unsupported(f"not an rtsp:// or rtsps:// URL: {parts.scheme}")
    host = parts.hostname
    problem = host_name_problem(host)
    if problem is not None:
        raise RtspError(f"invalid host {_shown(host)}: {problem}")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise RtspError("malformed URL (its port is not a number from 1 to 65535)") from None
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
    qops = [q.strip() for q in c.get("qop", "").split(",") if q.strip()]
    nc = ""
    if "auth" in qops:
        creds.nonce_count += 1
        nc, cnonce = f"{creds.nonce_count:08x}", cnonce or os.urandom(8).hex()
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    # FFmpeg's layout (libavformat/httpauth.c), which cameras are known to
    # take: every value quoted, the algorithm only when the challenge named
    # one. live555 (most cameras) refuses the whole header at the first value
    # not in quotes; it never asks for qop, so the one unquoted value, nc
    # (RFC 7616), comes only with qop, and last.
    fields = [("username", creds.user), ("realm", realm), ("nonce", nonce), ("uri", uri)]
    fields.append(("response", response))
    if "algorithm" in c:
        fields.append(("algorithm", c["algorithm"]))
    if "opaque" in c:
        fields.append(("opaque", c["opaque"]))
    if nc:
        fields += [("qop", "auth"), ("cnonce", cnonce)]
    header = "Digest " + ", ".join(f'{name}="{value}"' for name, value in fields)
    return header + (f", nc={nc}" if nc else "")


def _annexb(*units: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + u for u in units if u)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return b""


def parse_sdp(sdp: str, base: str) -> VideoTrack:
    """The first video stream of the session description, if this client reads
    it; RtspError when the description is malformed."""
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
        raise Unsupported(f"video transport {_shown(' '.join(fields[2:3]))}")
    payload_type = _number(fields[3], "payload type (m=video)", 0, 127)
    rtpmap = fmtp = control = ""
    for line in lines[1:]:
        if line.startswith(f"a=rtpmap:{payload_type} "):
            rtpmap = line.split(" ", 1)[1]
        elif line.startswith(f"a=fmtp:{payload_type} "):
            fmtp = line.split(" ", 1)[1]
        elif line.startswith("a=control:"):
            control = line[len("a=control:") :]
    encoding, _, rate = rtpmap.partition("/")
    codec = {"H264": "h264", "H265": "hevc"}.get(encoding.strip().upper())
    if codec is None:
        raise Unsupported(f"video codec {_shown(encoding) if encoding else 'unknown'}")
    rate = rate.split("/")[0].strip()
    clock_rate = _number(rate, "clock rate (a=rtpmap)", 1, MAX_CLOCK_RATE) if rate else 90000
    params = {}
    for item in fmtp.split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            params[key.lower()] = value.strip()
    if codec == "h264":
        mode = params.get("packetization-mode") or "0"
        if _number(mode, "packetization-mode (a=fmtp)", 0, 999) not in (0, 1):
            raise Unsupported("H.264 interleaved packetization")
        sets = params.get("sprop-parameter-sets", "")
        extradata = _annexb(*(_b64(s) for s in sets.split(",") if s))
    else:
        don_diff = params.get("sprop-max-don-diff") or "0"
        if _number(don_diff, "sprop-max-don-diff (a=fmtp)", 0, 999_999_999) > 0:
            raise Unsupported("H.265 with decoding order numbers")
        extradata = _annexb(
            *(_b64(params.get(k, "")) for k in ("sprop-vps", "sprop-sps", "sprop-pps"))
        )
    return VideoTrack(
        control=_resolve(base, control or session_control),
        session_url=_resolve(base, session_control),
        payload_type=payload_type,
        codec=codec,
        clock_rate=clock_rate,
        extradata=extradata,
    )


def _resolve(base: str, control: str) -> str:
    if not control or control == "*":
        return _request_uri(base)
    if re.match(r"rtsps?://", control, re.IGNORECASE):
        return _request_uri(control)
    return _request_uri(base.rstrip("/") + "/" + control.lstrip("/"))


def _request_uri(uri: str) -> str:
    """A URI fit for the request line: the camera's spaces, control and
    non-ASCII characters percent-encoded (no request it can split in two)."""
    return re.sub(
        r"[^\x21-\x7e]", lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), uri.strip()
    )


def parse_answer_head(head: bytes) -> Response:
    """An answer's status line and headers (up to the blank line), bounded;
    RtspError when it is not RTSP. The body is the caller's to read."""
    if len(head) > MAX_HEADER:
        raise RtspError("the camera's answer is not RTSP (its head is too long)")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    match = _STATUS_LINE.fullmatch(status_line.rstrip())
    if match is None:
        raise RtspError(f"not an RTSP answer: {_shown(status_line)}")
    if len(header_lines) > MAX_HEADER_LINES:
        raise RtspError(f"the camera's answer has more than {MAX_HEADER_LINES} header lines")
    headers: dict[str, list[str]] = {}
    for line in header_lines:
        if len(line) > MAX_HEADER_LINE:
            raise RtspError(f"a header line of the camera's answer is over {MAX_HEADER_LINE} bytes")
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    answer = Response(int(match[1]), (match[2] or "").strip(), headers, b"")
    answer.content_length()  # a malformed one fails here, before any body is read
    return answer


def parse_session(value: str) -> tuple[str, float]:
    """The Session header: (its identifier, the timeout in seconds; the
    default when none or a malformed one is given)."""
    session, *params = (p.strip() for p in value.split(";"))
    timeout = DEFAULT_SESSION_TIMEOUT
    for param in params:
        key, _, number = param.partition("=")
        number = number.strip()
        if key.strip().lower() == "timeout" and _NUMBER.fullmatch(number):
            timeout = min(MAX_SESSION_TIMEOUT, max(MIN_SESSION_TIMEOUT, float(number)))
    return session, timeout


def parse_transport(value: str, status: int = 200) -> int:
    """The RTP channel SETUP's Transport answer agreed to over the RTSP
    connection; TransportRefused when it did not agree to TCP interleaving."""
    match = re.search(r"(?:^|[;,\s])interleaved=([0-9]{1,3})(?![0-9])", value)
    if "TCP" not in value.upper() or match is None or int(match[1]) > 255:
        raise TransportRefused(
            f"the server refused RTSP over TCP (SETUP answered {status} "
            f"with Transport {_shown(value)})",
            status,
        )
    return int(match[1])


class RtspSession:
    """One RTSP connection over TCP; ``start()`` leaves it playing."""

    def __init__(
        self,
        url: str,
        open_timeout: float,
        read_timeout: float,
        tls: TlsPolicy | None = None,
        source_policy: SourcePolicy | None = None,
    ) -> None:
        self.url, self.host, self.port, self.creds = split_url(url)
        self.tls = tls or TlsPolicy()  # for rtsps://
        self.source_policy = source_policy or SourcePolicy()  # where cameras may be
        self.scheme = urlsplit(self.url).scheme.lower()
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
        # The credentials go only to where the user sent them: a redirect
        # elsewhere (another host, port or scheme) sets them aside.
        self._given_creds = self.creds
        self._origin = (self.scheme, self.host, self.port)
        self._withheld = ""  # why, once set aside: part of a later 401's reason

    # -- the conversation ---------------------------------------------------
    def start(self) -> bytes:
        """DESCRIBE, SETUP, PLAY; returns the bytes read past PLAY's answer (the
        first data, which the reader must see first)."""
        try:
            return self._start()
        except (ValueError, ArithmeticError, LookupError) as exc:
            # The parsers below raise RtspError with a reason on anything a
            # camera sends; this is the net under them, so that no camera can
            # crash the worker. UnicodeError is a ValueError.
            raise RtspError(
                f"the camera's answers could not be read ({type(exc).__name__})"
            ) from None

    def _start(self) -> bytes:
        self._deadline = time.monotonic() + self.open_timeout
        self.sock = self._open()
        described = self._describe()
        base = described.header("Content-Base") or described.header("Content-Location") or self.url
        self.track = parse_sdp(described.body.decode("utf-8", "replace"), base)
        setup = self.request(
            "SETUP",
            self.track.control,
            {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"},
        )
        self._take_session(setup)
        self.channel = parse_transport(setup.header("Transport") or "", setup.status)
        self.request("PLAY", self.track.session_url, {"Range": "npt=0.000-"})
        assert self.sock is not None
        self.sock.settimeout(self.read_timeout)  # for keep-alives from now on
        ahead, self._buffer = self._buffer, b""
        return ahead

    def _open(self) -> socket.socket:
        try:
            return self._connect()
        except UnicodeError:  # the name lookup's IDNA encoding of the host
            raise RtspError(
                f"invalid host name {_shown(self.host)} (it cannot be looked up)"
            ) from None

    def _connect(self) -> socket.socket:
        """A new connection to ``self.host``, ``self.port``: the one place that
        makes it. The host is looked up and each of its addresses checked
        against the source policy here, at every connection (a redirect's and
        a reconnect's too: DNS rebinding), and the socket connects to an
        address that was checked; the name stays for TLS and the URLs."""
        endpoints = self.source_policy.resolve_and_check(self.host, self.port, self._remaining())
        sock = _connect_first(endpoints, self._remaining)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.scheme == "rtsps":
            return connect_tls(sock, self.host, self.tls, self._remaining())
        return sock

    def _describe(self) -> Response:
        """OPTIONS and DESCRIBE, following redirects on the way."""
        visited = [self.url]
        while True:
            try:
                options = self.request("OPTIONS", self.url)
                public = (options.header("Public") or "").upper()
                self.keepalive_method = "GET_PARAMETER" if "GET_PARAMETER" in public else "OPTIONS"
                return self.request("DESCRIBE", self.url, {"Accept": "application/sdp"})
            except _Redirected as redirect:
                self._follow(redirect, visited)

    def _follow(self, redirect: _Redirected, visited: list[str]) -> None:
        """Point the session at the redirect's Location; the credentials stay
        only on the host, port and scheme they were given for."""
        said = f"{redirect.method} answered {redirect.status} (a redirect)"
        if not redirect.location:
            raise RtspError(f"{said} without a Location", redirect.status)
        target = _join(self.url, redirect.location)
        try:
            url, host, port, _ = split_url(target)  # credentials in it: the camera's, not taken
        except Unsupported:
            raise RtspError(
                f"{said} to {_shown(mask_url(target))}, not an rtsp:// URL", redirect.status
            ) from None
        except RtspError as exc:
            raise RtspError(f"{said} to an invalid URL: {exc}", redirect.status) from None
        hops = " -> ".join(mask_url(u) for u in [*visited, url])
        if url in visited:
            raise RtspError(f"redirect loop: {hops}", redirect.status)
        if len(visited) > MAX_REDIRECTS:
            raise RtspError(f"more than {MAX_REDIRECTS} redirects: {hops}", redirect.status)
        visited.append(url)
        scheme = urlsplit(url).scheme.lower()
        moved = (scheme, host, port) != (self.scheme, self.host, self.port)
        self.url, self.scheme, self.host, self.port = url, scheme, host, port
        if (scheme, host, port) == self._origin:
            self.creds, self._withheld = self._given_creds, ""
        elif self._given_creds is not None:
            self.creds = None
            origin = _endpoint(*self._origin)
            self._withheld = (
                "credentials were not forwarded across hosts "
                f"(redirected from {origin} to {_endpoint(scheme, host, port)})"
            )
        closing = "close" in (redirect.response.header("Connection") or "").lower()
        if moved or closing:
            if self.sock is not None:
                self.sock.close()
            self.sock, self._buffer = None, b""
            try:
                self.sock = self._open()
            except SourceNotAllowed as exc:  # the classic way around a policy
                origin = _endpoint(*self._origin)
                raise SourceNotAllowed(f"{exc.reason} (redirected from {origin})") from None

    def _take_session(self, response: Response) -> None:
        session, timeout = parse_session(response.header("Session") or "")
        if not session:
            raise RtspError("SETUP answered without a session")
        self.session, self.session_timeout = session, timeout

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

    def location(self) -> str:
        """Where the conversation ended up (after redirects), with the
        credentials it may use there: so that another client (FFmpeg's) starts
        where this one ended, with the password only if that is where the
        user sent it. (FFmpeg follows any redirect it gets itself, with the
        password: that part is FFmpeg's.)"""

        if self.creds is None:
            return self.url
        parts = urlsplit(self.url)
        userinfo = quote(self.creds.user, safe="")
        if self.creds.password:
            userinfo += ":" + quote(self.creds.password, safe="")
        return urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, ""))

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
            # Each request answers one challenge (the first, a new or a stale
            # nonce); a second refusal of the same credentials is final.
            self.creds.scheme, self.creds.challenge = choose_challenge(values)
            self.creds.nonce_count = 0
            response = self._exchange(method, uri, headers or {})
        said = f"{method} answered {response.status} {_clean(response.reason)}".rstrip()
        if response.status in (401, 403):
            if self._withheld:
                said += f"; {self._withheld}"
            raise RtspAuthError(said, response.status)
        if response.status in FOLLOWED_REDIRECTS and method in ("OPTIONS", "DESCRIBE"):
            raise _Redirected(method, response)
        if response.status in REDIRECTS:
            raise RtspError(
                f"{said} (a redirect this client does not follow: only a 301, 302, 303, 307 "
                "or 308 to OPTIONS or DESCRIBE)",
                response.status,
            )
        if response.status == 461 and method == "SETUP":
            raise TransportRefused(f"the server refused RTSP over TCP ({said})", 461)
        if response.status == 551 and method == "OPTIONS":
            return response  # "option not supported": OPTIONS is only a courtesy
        if not 200 <= response.status < 300:
            raise RtspError(said, response.status)
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
        uri = _request_uri(uri)
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
            # Data may come before an answer (after PLAY): skip whole frames
            # (each at most 4 + 65535 bytes, so the wait for one is bounded).
            while self._buffer[:1] == b"$" and len(self._buffer) >= 4:
                size = 4 + int.from_bytes(self._buffer[2:4], "big")
                if len(self._buffer) < size:
                    break
                self._buffer = self._buffer[size:]
            if self._buffer[:1] != b"$":
                end = self._buffer.find(b"\r\n\r\n")
                if end >= 0:
                    break
                if len(self._buffer) > MAX_HEADER:
                    raise RtspError("the camera's answer is not RTSP (no end to its head)")
            self._receive()
        response = parse_answer_head(self._buffer[:end])
        self._buffer = self._buffer[end + 4 :]
        length = response.content_length()
        while len(self._buffer) < length:
            self._receive()
        response.body, self._buffer = self._buffer[:length], self._buffer[length:]
        return response

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


def _join(base: str, location: str) -> str:
    """``location`` resolved against ``base`` (urljoin knows rtsp:// only)."""
    scheme = urlsplit(base).scheme
    joined = urljoin("rtsp" + base[len(scheme) :], location.strip())
    if urlsplit(location.strip()).scheme:
        return location.strip()
    return scheme + joined[len("rtsp") :]


def _endpoint(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _connect_first(endpoints: list[Endpoint], remaining: Callable[[], float]) -> socket.socket:
    """A TCP connection to the first of ``endpoints`` that takes one, each try
    within what is left of the deadline (socket.create_connection's way, but
    to addresses already looked up and checked, never to a new lookup's)."""
    errors: list[OSError] = []
    for endpoint in endpoints:
        sock = socket.socket(endpoint.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(remaining())
            sock.connect(endpoint.sockaddr)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        return sock
    raise errors[-1]  # as create_connection: the last try's error
