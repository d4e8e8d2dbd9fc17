"""RTSP URL validation, and masking of credentials wherever text may leak them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

MAX_URL_LENGTH = 2048
SCHEMES = ("rtsp", "rtsps")
MASK = "***"
# The one list of parameter names whose values are credentials, wherever they
# appear: in the query (?access_token=...) or in the path, as Dahua-style
# cameras take them (/user=admin&password=...&channel=1). Every output (/list,
# /streams, status, events, logs) masks through it.
SECRET_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "apikey",
        "api_key",
        "key",
        "pw",
        "pwd",
        "pass",
        "password",
        "passwd",
        "auth",
        "sig",
        "signature",
        "secret",
    }
)
# The password runs to the authority's last '@' (a password may hold one).
_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):[^/\s]*@")
# name=value in free text, the name a whole parameter name: at the start, or
# after a query, path or parameter separator.
_PARAM_SECRET_RE = re.compile(
    r"(?P<k>(?:^|[?&;/])(?:" + "|".join(sorted(SECRET_PARAMS)) + r"))=[^&;#\s'\"]*",
    re.IGNORECASE,
)
# What separates name=value parameters: in a query or fragment '&' and ';'
# (a value may hold '/'), in a Dahua-style path '/' too.
_QUERY_SEPARATORS_RE = re.compile(r"([&;])")
_PATH_SEPARATORS_RE = re.compile(r"([&;/])")


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


def _is_secret_name(name: str) -> bool:
    return unquote_plus(name).strip().lower() in SECRET_PARAMS


def _secret_params(
    text: str, separators: re.Pattern[str] = _QUERY_SEPARATORS_RE
) -> list[tuple[int, str]]:
    """(index among the pieces of ``separators.split(text)``, raw value) of
    each name=value whose name is in SECRET_PARAMS."""
    pieces = separators.split(text)
    found = []
    for i, piece in enumerate(pieces):
        name, eq, value = piece.partition("=")
        if eq and _is_secret_name(name):
            found.append((i, value))
    return found


def _mask_params(text: str, separators: re.Pattern[str] = _QUERY_SEPARATORS_RE) -> str:
    """The secret values among name=value pieces of a query or path masked;
    every other byte kept as it was (no re-encoding)."""
    pieces = separators.split(text)
    for i, _ in _secret_params(text, separators):
        pieces[i] = pieces[i].partition("=")[0] + "=" + MASK
    return "".join(pieces)


def mask_url(url: str) -> str:
    """``rtsp://user:pass@host/x?password=y`` -> ``rtsp://user:***@host/x?password=***``,
    and the Dahua-style ``rtsp://host/user=admin&password=y`` -> ``.../user=admin&password=***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_secrets(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            _mask_params(parts.path, _PATH_SEPARATORS_RE),
            _mask_params(parts.query),
            _mask_params(parts.fragment),
        )
    )


def mask_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """Masks credentials in free text (error messages, log lines): the known
    secrets first, longest first (a pattern could cut one in two, leaving a
    piece no longer recognised), then the patterns."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _PARAM_SECRET_RE.sub(lambda m: f"{m['k']}={MASK}", text)


def has_secret_params(url: str) -> bool:
    """Whether credentials ride in the URL's query, path or fragment (not its userinfo)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(
        _secret_params(parts.path, _PATH_SEPARATORS_RE)
        or _secret_params(parts.query)
        or _secret_params(parts.fragment)
    )


def drop_secret_params(query: str) -> str:
    """A query without its secret name=value parameters, the rest as written."""
    pieces = re.split(r"[&;]", query)
    return "&".join(p for p in pieces if p and not _is_secret_name(p.partition("=")[0]))


def url_secrets(url: str) -> list[str]:
    """The secret strings inside a URL, as written and decoded, to mask
    wherever they might reappear."""
    try:
        parts = urlsplit(url)
        raw = [parts.password or ""]
    except ValueError:
        return []
    raw += [value for _, value in _secret_params(parts.path, _PATH_SEPARATORS_RE)]
    for text in (parts.query, parts.fragment):
        raw += [value for _, value in _secret_params(text)]
    found: list[str] = []
    for value in raw:
        for form in (value, unquote(value), unquote_plus(value)):
            if form and form != MASK and form not in found:
                found.append(form)
    return found


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """(URL safe for the spec, Secret data). The spec never holds a credential."""
    parts = urlsplit(url)
    data: dict[str, str] = {}
    if parts.username:
        data["username"] = unquote(parts.username)
    if parts.password:
        data["password"] = unquote(parts.password)
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True))
    if has_secret_params(url):
        # Credentials in the query or a Dahua-style path: the Secret holds the
        # whole URL; the spec's drops them from the query and masks them in the path.
        data = {"url": url}
        query = drop_secret_params(parts.query)
    host = parts.netloc.rsplit("@", 1)[-1]
    clean = urlunsplit((parts.scheme, host, parts.path or "/", query, ""))
    return mask_url(clean), data
