"""RTSP URL validation, and masking of credentials wherever text may leak them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MAX_URL_LENGTH = 2048
SCHEMES = ("rtsp", "rtsps")
MASK = "***"
# Query parameters some cameras take credentials in.
SECRET_PARAMS = frozenset(
    {"password", "pass", "passwd", "pwd", "token", "auth", "key", "secret", "signature"}
)
_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]*@")
_QUERY_SECRET_RE = re.compile(
    r"(?P<k>[?&](?:" + "|".join(sorted(SECRET_PARAMS)) + r"))=[^&\s'\"]*", re.IGNORECASE
)


class InvalidURLError(ValueError):
    pass


MAX_HOST_NAME = 253
MAX_LABEL = 63
# After IDNA: letters, digits, hyphens inside; underscores too (some local
# networks name cameras so, and resolvers take them).
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?", re.IGNORECASE)


def host_name_problem(host: str) -> str | None:
    """Why ``host`` (a URL's host, IPv6 without brackets) cannot be looked up
    or connected to, in a few words; None when it can."""
    if ":" in host:  # only an IPv6 literal has colons
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "not a valid IPv6 address"
        return None
    name = host[:-1] if host.endswith(".") else host  # a rooted name
    labels = name.split(".")
    if re.fullmatch(r"[0-9]+", labels[-1]):  # numeric: meant as an IPv4 address
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return "not a valid IPv4 address"
        return None
    if any(not label for label in labels):
        return "empty label in the host name"
    if any(len(label) > MAX_LABEL for label in labels if label.isascii()):
        return f"a label of the host name is longer than {MAX_LABEL} characters"
    try:
        ascii_labels = [label.encode("idna").decode("ascii") for label in labels]
    except UnicodeError:
        return "a label of the host name is too long or cannot be encoded (IDNA)"
    if any(len(label) > MAX_LABEL for label in ascii_labels):
        return f"a label of the host name is longer than {MAX_LABEL} characters"
    if len(".".join(ascii_labels)) > MAX_HOST_NAME:
        return f"host name longer than {MAX_HOST_NAME} characters"
    if not all(_LABEL_RE.fullmatch(label) for label in ascii_labels):
        return "characters not allowed in a host name"
    return None


def validate_rtsp_url(raw: str) -> str:
    """Returns the URL stripped of surrounding whitespace, or raises with a reason."""
    url = raw.strip()
    if not url:
        raise InvalidURLError("empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURLError(f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise InvalidURLError("contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURLError(f"malformed: {mask_secrets(str(exc))}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise InvalidURLError("scheme must be rtsp:// or rtsps://")
    if not parts.hostname:
        raise InvalidURLError("no host")
    problem = host_name_problem(parts.hostname)
    if problem is not None:
        raise InvalidURLError(f"invalid host: {problem}")
    if port == 0:
        raise InvalidURLError("port must be between 1 and 65535")
    return url


def mask_url(url: str) -> str:
    """``rtsp://user:pass@host/x?password=y`` -> ``rtsp://user:***@host/x?password=***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_secrets(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = urlencode(
                [(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="*"
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """Masks credentials in free text (error messages, log lines)."""
    text = _USERINFO_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _QUERY_SECRET_RE.sub(lambda m: f"{m['k']}={MASK}", text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text


def url_secrets(url: str) -> list[str]:
    """The secret strings inside a URL, to mask wherever they might reappear."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in SECRET_PARAMS]
    except ValueError:
        return []
    return [s for s in found if s]
