"""What reading a camera over RTSP raises, and the camera's text in its reasons.

Every byte the client reads comes from the camera: whatever it sends, parsing
raises only ``RtspError`` (retryable), ``RtspAuthError``, ``Unsupported`` or
``NoVideo``, with a short reason in which the camera's own text is printable
ASCII and bounded (``clean``, ``shown``).
"""

from __future__ import annotations

import re

# ASCII digits only: str.isdigit() and int() also take "²" and "٩"; and few
# enough that int() never meets Python's limit on long numbers.
NUMBER = re.compile(r"[0-9]{1,9}")


class RtspError(OSError):
    """The camera answered with an error status, or not as RTSP."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RtspAuthError(RtspError):
    """401 or 403: retrying with the same credentials will not help."""


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


def clean(text: str, limit: int = 60) -> str:
    """Camera text fit for a reason: printable ASCII, bounded."""
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def shown(text: str, limit: int = 60) -> str:
    return repr(clean(text, limit))


def number(text: str, what: str, low: int, high: int) -> int:
    """An ASCII decimal within [low, high]; else RtspError naming ``what``."""
    text = text.strip()
    if NUMBER.fullmatch(text) is None or not low <= int(text) <= high:
        raise RtspError(f"malformed {what} in the camera's answer: {shown(text)}")
    return int(text)
