"""Basic and Digest (MD5) authorization for RTSP requests (RFC 2617, 7616):
the strongest scheme a camera's challenge offers, and the header that answers
it on each request, laid out as FFmpeg's is, which cameras are known to take.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field

from .errors import Unsupported


@dataclass
class Credentials:
    user: str
    password: str
    nonce_count: int = 0
    challenge: dict[str, str] = field(default_factory=dict)
    scheme: str = ""


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

    import hashlib  # for Digest only: ssl is not loaded either without TLS

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
