"""RtspSession: the RTSP conversation for one camera, over TCP.

The data comes back on the same TCP connection, interleaved (RFC 2326 10.12),
and is read in C (``_rtp.c``, behind ``RtpPackets``). What is here runs a few
times per connection: DESCRIBE (with Basic or Digest authentication), SETUP of
the first H.264 or H.265 video stream, PLAY, a keep-alive within the session's
timeout, TEARDOWN. Anything this client does not handle raises ``Unsupported``
before any data flows, and the caller reads that camera with FFmpeg instead.

Redirects (before SETUP) are followed here, not left to FFmpeg, so that the
credentials go to no other host than the one they were given for.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit, urlunsplit

from ...core.sources import Endpoint, SourceNotAllowed, SourcePolicy
from ...core.urls import mask_url
from ..tls import TlsPolicy, connect_tls
from .answers import (
    DEFAULT_SESSION_TIMEOUT,
    MAX_HEADER,
    Response,
    parse_answer_head,
    parse_session,
    parse_transport,
)
from .auth import authorization, choose_challenge
from .errors import RtspAuthError, RtspError, TransportRefused, Unsupported, clean, shown
from .sdp import VideoTrack, parse_sdp
from .urls import join_location, origin_url, request_uri, split_url

USER_AGENT = "streamgrid"
MAX_REDIRECTS = 3
REDIRECTS = frozenset({300, 301, 302, 303, 305, 307, 308})
# Followed before SETUP. Not 305 "Use Proxy" (the Location is a proxy, not the
# stream) nor 300 "Multiple Choices": errors that say so.
FOLLOWED_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _Redirected(RtspError):
    """OPTIONS or DESCRIBE answered 3xx; ``start()`` follows it (internal)."""

    def __init__(self, method: str, response: Response) -> None:
        super().__init__(f"{method} answered {response.status} (a redirect)", response.status)
        self.method, self.response = method, response
        self.location = response.header("Location") or ""


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
                f"invalid host name {shown(self.host)} (it cannot be looked up)"
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
        target = join_location(self.url, redirect.location)
        try:
            url, host, port, _ = split_url(target)  # credentials in it: the camera's, not taken
        except Unsupported:
            raise RtspError(
                f"{said} to {shown(mask_url(target))}, not an rtsp:// URL", redirect.status
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
            origin = origin_url(*self._origin)
            self._withheld = (
                "credentials were not forwarded across hosts "
                f"(redirected from {origin} to {origin_url(scheme, host, port)})"
            )
        closing = "close" in (redirect.response.header("Connection") or "").lower()
        if moved or closing:
            if self.sock is not None:
                self.sock.close()
            self.sock, self._buffer = None, b""
            try:
                self.sock = self._open()
            except SourceNotAllowed as exc:  # the classic way around a policy
                origin = origin_url(*self._origin)
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
        said = f"{method} answered {response.status} {clean(response.reason)}".rstrip()
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
        uri = request_uri(uri)
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
