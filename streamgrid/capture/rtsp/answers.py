"""A camera's answers: the status line and headers, bounded, and the two
headers whose values the conversation acts on (Session, Transport). The
session (session.py) frames them on the connection and reads the bodies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import NUMBER, RtspError, TransportRefused, shown

MAX_HEADER = 64 * 1024  # an answer's head
MAX_HEADER_LINES = 128
MAX_HEADER_LINE = 8 * 1024
MAX_BODY = 1024 * 1024
DEFAULT_SESSION_TIMEOUT = 60.0
MIN_SESSION_TIMEOUT, MAX_SESSION_TIMEOUT = 2.0, 3600.0
_STATUS_LINE = re.compile(r"RTSP/[0-9]\.[0-9]+ ([1-9][0-9]{2})(?:[ \t](.*))?")


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
            raise RtspError(f"malformed Content-Length in the camera's answer: {shown(value)}")
        if len(value) > 9 or int(value) > MAX_BODY:
            raise RtspError("the camera's answer is too large")
        return int(value)


def parse_answer_head(head: bytes) -> Response:
    """An answer's status line and headers (up to the blank line), bounded;
    RtspError when it is not RTSP. The body is the caller's to read."""
    if len(head) > MAX_HEADER:
        raise RtspError("the camera's answer is not RTSP (its head is too long)")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    match = _STATUS_LINE.fullmatch(status_line.rstrip())
    if match is None:
        raise RtspError(f"not an RTSP answer: {shown(status_line)}")
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
        if key.strip().lower() == "timeout" and NUMBER.fullmatch(number):
            timeout = min(MAX_SESSION_TIMEOUT, max(MIN_SESSION_TIMEOUT, float(number)))
    return session, timeout


def parse_transport(value: str, status: int = 200) -> int:
    """The RTP channel SETUP's Transport answer agreed to over the RTSP
    connection; TransportRefused when it did not agree to TCP interleaving."""
    match = re.search(r"(?:^|[;,\s])interleaved=([0-9]{1,3})(?![0-9])", value)
    if "TCP" not in value.upper() or match is None or int(match[1]) > 255:
        raise TransportRefused(
            f"the server refused RTSP over TCP (SETUP answered {status} "
            f"with Transport {shown(value)})",
            status,
        )
    return int(match[1])
