"""Pure parts of gateway/auth.py: which verb a call needs, how a header is
read, static tokens, and when serving unauthenticated is refused."""

from __future__ import annotations

import pytest

from streamgrid.gateway.auth import (
    Action,
    Authenticator,
    AuthFailed,
    Forbidden,
    Principal,
    RequireToken,
    StaticTokens,
    TtlCache,
    action_for,
    bearer_token,
    exposure_problem,
)


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("POST", "/start", Action("create")),
        ("GET", "/list", Action("list")),
        ("POST", "/status/abc", Action("get", "abc")),
        ("GET", "/streams/abc", Action("get", "abc")),
        ("POST", "/stop/abc", Action("update", "abc")),
        ("POST", "/stop", Action("update")),
        ("GET", "/nowhere", None),
        ("GET", "/startx", None),
    ],
)
def test_each_call_needs_the_verb_kubectl_would(method: str, path: str, action: Action) -> None:
    assert action_for(method, path) == action


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc  ") == "abc"
    for bad in (None, "", "Bearer", "Bearer ", "Basic abc", "abc"):
        with pytest.raises(AuthFailed, match="required"):
            bearer_token(bad)
    for bad in ("Bearer " + "a" * 20000, "Bearer a\x01b", "Bearer é"):
        with pytest.raises(AuthFailed, match="invalid"):
            bearer_token(bad)


def test_static_tokens_match_exactly_and_may_do_everything() -> None:
    tokens = StaticTokens(["one-token", "other-token"])
    for good in ("one-token", "other-token"):
        principal = tokens.authenticate(good)
        assert principal is not None and tokens.authorize(principal, Action("update"))
    for bad in ("one-toke", "one-tokenx", "", "ONE-TOKEN"):
        assert tokens.authenticate(bad) is None
    assert StaticTokens([""]).authenticate("") is None  # an empty token is no token


class OnlyReads:
    """A checker that knows one token and allows reads only."""

    def authenticate(self, token: str) -> Principal | None:
        return Principal("reader") if token == "r" else None

    def authorize(self, principal: Principal, action: Action) -> bool:
        return action.verb in ("get", "list")


def test_the_first_checker_that_knows_a_token_decides() -> None:
    auth = Authenticator([StaticTokens(["s"]), OnlyReads()])
    assert auth.check("Bearer s", Action("update")).static
    assert auth.check("Bearer r", Action("list")).name == "reader"
    with pytest.raises(Forbidden, match=r"reader may not update videostreams/x\.streamgrid\.io"):
        auth.check("Bearer r", Action("update", "x"))
    with pytest.raises(AuthFailed, match="invalid bearer token"):
        auth.check("Bearer nobody", Action("list"))
    assert auth.check("Bearer r", None).name == "reader"  # unknown paths: authenticated only


def test_serving_unauthenticated_is_refused_off_loopback() -> None:
    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"):
        assert exposure_problem(host, authenticated=False, insecure=False) is None
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        problem = exposure_problem(host, authenticated=False, insecure=False)
        assert problem is not None and host in problem
        assert exposure_problem(host, authenticated=True, insecure=False) is None
        assert exposure_problem(host, authenticated=False, insecure=True) is None


def test_the_review_cache_expires_and_stays_bounded() -> None:
    cache = TtlCache(ttl=60, size=2)
    cache.put("a", 1)
    cache.put("b", None)
    assert cache.get("a") == (True, 1)
    assert cache.get("b") == (True, None)  # a remembered "no" is a hit too
    cache.put("c", 3)
    assert cache.get("a") == (False, None) or cache.get("b") == (False, None)
    expired = TtlCache(ttl=0)
    expired.put("a", 1)
    assert expired.get("a") == (False, None)


class DeniesAll:
    def authenticate(self, token: str) -> Principal | None:
        return Principal("someone") if token == "t" else None

    def authorize(self, principal: Principal, action: Action) -> bool:
        return False


def test_the_middleware_judges_the_path_the_router_sees() -> None:
    """Behind a proxy (root_path), /api/list is /list: RBAC applies to it."""
    import asyncio

    import httpx
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/list")
    def listing() -> dict[str, str]:
        return {"reached": "yes"}

    app.add_middleware(RequireToken, authenticator=Authenticator([DeniesAll()]))

    async def calls() -> list[int]:
        transport = httpx.ASGITransport(app=app, root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            denied = await client.get("/api/list", headers={"Authorization": "Bearer t"})
            anonymous = await client.get("/api/list")
            health = await client.get("/api/healthz")
        return [denied.status_code, anonymous.status_code, health.status_code]

    denied, anonymous, health = asyncio.run(calls())
    assert (denied, anonymous) == (403, 401)
    assert health != 401  # open paths stay open
