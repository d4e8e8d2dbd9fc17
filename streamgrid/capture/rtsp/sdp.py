"""The session description (SDP, RFC 8866) a camera answers DESCRIBE with:
the first video stream, if it is one the C receive loop reads (H.264 in
packetization mode 0 or 1, H.265 without decoding order numbers), with the
URLs to SETUP and PLAY and its parameter sets. Anything else is
``Unsupported`` before any data flows, and FFmpeg reads that camera instead.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from .errors import NoVideo, Unsupported, number, shown
from .urls import request_uri

MAX_CLOCK_RATE = 10_000_000


@dataclass
class VideoTrack:
    """The video stream chosen from the session description."""

    control: str  # the URL to SETUP
    session_url: str  # the URL to PLAY, keep alive and TEARDOWN (aggregate control)
    payload_type: int
    codec: str  # "h264" | "hevc"
    clock_rate: int
    extradata: bytes  # parameter sets from the SDP, Annex B


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
        raise Unsupported(f"video transport {shown(' '.join(fields[2:3]))}")
    payload_type = number(fields[3], "payload type (m=video)", 0, 127)
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
        raise Unsupported(f"video codec {shown(encoding) if encoding else 'unknown'}")
    rate = rate.split("/")[0].strip()
    clock_rate = number(rate, "clock rate (a=rtpmap)", 1, MAX_CLOCK_RATE) if rate else 90000
    params = {}
    for item in fmtp.split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            params[key.lower()] = value.strip()
    if codec == "h264":
        mode = params.get("packetization-mode") or "0"
        if number(mode, "packetization-mode (a=fmtp)", 0, 999) not in (0, 1):
            raise Unsupported("H.264 interleaved packetization")
        sets = params.get("sprop-parameter-sets", "")
        extradata = _annexb(*(_b64(s) for s in sets.split(",") if s))
    else:
        don_diff = params.get("sprop-max-don-diff") or "0"
        if number(don_diff, "sprop-max-don-diff (a=fmtp)", 0, 999_999_999) > 0:
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
        return request_uri(base)
    if re.match(r"rtsps?://", control, re.IGNORECASE):
        return request_uri(control)
    return request_uri(base.rstrip("/") + "/" + control.lstrip("/"))
