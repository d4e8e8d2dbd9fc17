"""Who may call the API: bearer tokens, checked before any route runs.

Two ways to hold a valid token, either or both configured:

- a static token (``STREAMGRID_API_TOKEN`` or ``STREAMGRID_API_TOKEN_FILE``),
  compared in constant time; it may do everything;
- a Kubernetes token (``STREAMGRID_AUTH_KUBERNETES=true``): the API server
  says who it belongs to (TokenReview), and RBAC says what they may do
  (SubjectAccessReview on ``videostreams`` in the gateway's namespace), so
  ``kubectl create token`` and ordinary Roles govern the HTTP API.

Each call maps to the verb kubectl would need for the same thing on the
resource: ``/start`` create, ``/list`` list, ``/status/<id>`` and
``/streams/<id>`` (and its frames) get, ``/streams`` list, ``/stop/<id>`` and
``/stop`` update. Only ``/healthz``, the API's own documentation and the
dashboard's page and assets (no data in them) need no token. Answers of the
API server are cached briefly (by a hash of the token, never the token itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..core.crd import GROUP, PLURAL
from ..core.logs import log_event

log = logging.getLogger("streamgrid.gateway")

# The dashboard's page and assets hold no data: its calls need a token.
OPEN_PATHS = frozenset(
    {"/", "/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)
# The docs pages' and the dashboard's own scripts and styles.
OPEN_PREFIXES = ("/docs-assets/", "/dashboard-assets/")
MAX_TOKEN = 16 * 1024  # a service-account JWT is ~1 KiB; anything far longer is not one
REVIEW_TIMEOUT = (3.0, 5.0)  # connect, read: a stalled API server is a quick 503
# Reviews in flight at once: random tokens from anyone cannot queue up work
# for the API server or take every thread; past this, 503 at once.
MAX_REVIEWS = 16
REALM = "streamgrid"


@dataclass(frozen=True)
class Action:
    """What a request asks to do, in Kubernetes RBAC terms."""

    verb: str
    name: str = ""  # one stream; empty for the collection

    def describe(self) -> str:
        what = f"{PLURAL}/{self.name}" if self.name else PLURAL
        return f"{self.verb} {what}.{GROUP}"


def action_for(method: str, path: str) -> Action | None:
    """The RBAC verb of an API call; None for a path that is not an API call
    (it needs a valid token, then answers 404 or 405 as it would)."""
    parts = path.strip("/").split("/")
    head, rest = parts[0], "/".join(parts[1:])
    if head == "start" and not rest:
        return Action("create")
    if head == "list" and not rest:
        return Action("list")
    if head == "status" and rest:
        return Action("get", rest)
    if head == "streams":  # /streams; /streams/<id>, its kept frames and thumbnails
        return Action("get", parts[1]) if rest else Action("list")
    if head == "stop":
        return Action("update", rest)
    return None


@dataclass(frozen=True)
class Principal:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)
    static: bool = False  # a holder of the static token may do everything


class AuthFailed(Exception):
    """401: no token, or one nobody vouches for."""


class Forbidden(Exception):
    """403: a known caller, not allowed this action."""


class ReviewerBusy(Exception):
    """503: MAX_REVIEWS already in flight."""


class TokenChecker(Protocol):
    def authenticate(self, token: str) -> Principal | None:
        """Who holds this token; None when this checker does not know it."""
        ...

    def authorize(self, principal: Principal, action: Action) -> bool: ...


class StaticTokens:
    """Tokens from settings or a file; each may do everything."""

    def __init__(self, tokens: list[str]) -> None:
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens if t]

    def authenticate(self, token: str) -> Principal | None:
        # Compare digests, so the time taken says nothing of the token's length.
        digest = hashlib.sha256(token.encode(errors="surrogateescape")).digest()
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        return Principal("static-token", static=True) if matched else None

    def authorize(self, principal: Principal, action: Action) -> bool:
        return principal.static


class TtlCache:
    """A small LRU of recent answers, so a busy client costs the API server
    one review per token (and per action) every ``ttl`` seconds."""

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl, self.size = ttl, size
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bool, Any]:
        with self._lock:
            hit = self._items.get(key)
            if hit is None or hit[0] < time.monotonic():
                return False, None
            self._items.move_to_end(key)
            return True, hit[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class KubernetesTokens:
    """TokenReview for who, SubjectAccessReview for what, against the API
    server the gateway already talks to."""

    def __init__(self, namespace: str, cache_seconds: float, api_client: Any = None) -> None:
        from kubernetes import client

        self.namespace = namespace
        self.authn = client.AuthenticationV1Api(api_client)
        self.authz = client.AuthorizationV1Api(api_client)
        self._client = client
        self._who = TtlCache(cache_seconds)
        self._may = TtlCache(cache_seconds)

    def authenticate(self, token: str) -> Principal | None:
        key = hashlib.sha256(token.encode(errors="surrogateescape")).digest()
        hit, cached = self._who.get(key)
        if hit:
            principal: Principal | None = cached
            return principal
        review = self.authn.create_token_review(
            self._client.V1TokenReview(spec=self._client.V1TokenReviewSpec(token=token)),
            _request_timeout=REVIEW_TIMEOUT,
        )
        status = review.status
        principal = None
        if status is not None and status.authenticated and status.user is not None:
            user = status.user
            principal = Principal(
                user.username or "",
                user.uid or "",
                tuple(user.groups or ()),
                {k: list(v) for k, v in (user.extra or {}).items()},
            )
        self._who.put(key, principal)
        return principal

    def authorize(self, principal: Principal, action: Action) -> bool:
        # Extra (token scopes, say) may change the answer: part of the key.
        extra = tuple(sorted((k, tuple(v)) for k, v in principal.extra.items()))
        key = (principal.name, principal.uid, principal.groups, extra, action)
        hit, cached = self._may.get(key)
        if hit:
            return bool(cached)
        c = self._client
        review = self.authz.create_subject_access_review(
            c.V1SubjectAccessReview(
                spec=c.V1SubjectAccessReviewSpec(
                    user=principal.name,
                    uid=principal.uid or None,
                    groups=list(principal.groups),
                    extra=principal.extra or None,
                    resource_attributes=c.V1ResourceAttributes(
                        group=GROUP,
                        resource=PLURAL,
                        namespace=self.namespace,
                        verb=action.verb,
                        name=action.name or None,
                    ),
                )
            ),
            _request_timeout=REVIEW_TIMEOUT,
        )
        allowed = bool(review.status and review.status.allowed)
        self._may.put(key, allowed)
        return allowed


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or AuthFailed."""
    if not authorization:
        raise AuthFailed("a bearer token is required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthFailed("a bearer token is required")
    if len(token) > MAX_TOKEN or not token.isascii() or not token.isprintable():
        raise AuthFailed("invalid bearer token")
    return token


class Authenticator:
    """Every configured checker, in order: the first that knows the token
    decides what it may do."""

    def __init__(self, checkers: list[TokenChecker]) -> None:
        self.checkers = checkers

    def check(self, authorization: str | None, action: Action | None) -> Principal:
        token = bearer_token(authorization)
        for checker in self.checkers:
            principal = checker.authenticate(token)
            if principal is None:
                continue
            if action is not None and not checker.authorize(principal, action):
                raise Forbidden(f"{principal.name} may not {action.describe()}")
            return principal
        raise AuthFailed("invalid bearer token")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_problem(host: str, authenticated: bool, insecure: bool) -> str | None:
    """Why serving on ``host`` as configured would be unsafe; None when it is not."""
    if authenticated or insecure or is_loopback(host):
        return None
    return (
        f"refusing to serve on {host} without authentication: set STREAMGRID_API_TOKEN "
        "(or STREAMGRID_API_TOKEN_FILE, or STREAMGRID_AUTH_KUBERNETES=true), "
        "or pass --insecure to serve anyone who can reach the port"
    )


Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


class RequireToken:
    """ASGI middleware: a request reaches the routes only with a token the
    Authenticator accepts for its action; else a plain-text 401 or 403."""

    def __init__(
        self, app: App, authenticator: Authenticator, also_open: frozenset[str] = frozenset()
    ) -> None:
        """``also_open``: paths served without a token besides OPEN_PATHS
        (``/metrics`` when it is public)."""
        self.app, self.authenticator = app, authenticator
        self.open_paths = OPEN_PATHS | also_open
        self._reviews = asyncio.Semaphore(MAX_REVIEWS)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # websockets: this API has none
            await plain_answer(send, 404, "Not Found")
            return
        path = route_path(scope)
        if path in self.open_paths or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization")
        authorization = raw.decode("latin-1") if raw is not None else None
        action = action_for(scope.get("method", ""), path)
        try:
            if self._reviews.locked():
                raise ReviewerBusy
            async with self._reviews:
                # The API server's reviews block: off the event loop.
                await asyncio.to_thread(self.authenticator.check, authorization, action)
        except ReviewerBusy:
            await plain_answer(send, 503, "Authentication unavailable: too many requests at once")
            return
        except AuthFailed as exc:
            challenge = f'Bearer realm="{REALM}"'
            if authorization:
                challenge += ', error="invalid_token"'
            await plain_answer(send, 401, f"Unauthorized: {exc}", {"www-authenticate": challenge})
            return
        except Forbidden as exc:
            log_event(log, "request.forbidden", logging.WARNING, path=path, reason=str(exc))
            await plain_answer(send, 403, f"Forbidden: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - the reviewer is down: not the caller's fault
            log_event(
                log, "auth.review_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}"
            )
            await plain_answer(send, 503, "Authentication unavailable: cannot reach the reviewer")
            return
        await self.app(scope, receive, send)


def route_path(scope: dict[str, Any]) -> str:
    """The path as the router matches it: behind a proxy's root_path, without it."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


async def plain_answer(
    send: Send, status: int, text: str, headers: dict[str, str] | None = None
) -> None:
    body = text.encode()
    raw_headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def read_token_file(path: Path) -> str:
    """A token file as Kubernetes mounts a Secret key: the token, maybe a newline."""
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the API token file {path}: {exc.strerror}") from None
    if not token:
        raise ValueError(f"the API token file {path} is empty")
    return token


def build_authenticator(
    static_tokens: list[str], kubernetes_namespace: str | None, cache_seconds: float
) -> Authenticator | None:
    """The configured checkers; None when nothing is configured (no auth)."""
    checkers: list[TokenChecker] = []
    if static_tokens:
        checkers.append(StaticTokens(static_tokens))
    if kubernetes_namespace is not None:
        checkers.append(KubernetesTokens(kubernetes_namespace, cache_seconds))
    return Authenticator(checkers) if checkers else None


def auth_summary(static_tokens: list[str], kubernetes: bool) -> str:
    """How callers are checked, for the start-up log line (never the token)."""
    ways = (["static-token"] if static_tokens else []) + (["kubernetes"] if kubernetes else [])
    return "+".join(ways) or "none"
