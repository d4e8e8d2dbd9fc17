"""docs/api.md against the app's own OpenAPI document, so that the page cannot
rot: every route there has a section here and every section a route, and each
section names its route's query parameters and status codes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from streamgrid.gateway.app import create_app

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
# A route's section: "## `POST /start`".
HEADING = re.compile(r"^## `(GET|POST|PUT|PATCH|DELETE|HEAD) (/[^`]*)`\s*$", re.MULTILINE)


def documented_sections(text: str) -> dict[tuple[str, str], str]:
    """(METHOD, path) -> the text of its section, up to the next ## heading."""
    sections: dict[tuple[str, str], str] = {}
    headings = list(re.finditer(r"^## ", text, re.MULTILINE))
    for match in HEADING.finditer(text):
        following = [h.start() for h in headings if h.start() > match.start()]
        end = following[0] if following else len(text)
        key = (match.group(1), match.group(2))
        assert key not in sections, f"{key} has two sections"
        sections[key] = text[match.end() : end]
    return sections


def openapi_operations() -> dict[tuple[str, str], dict[str, Any]]:
    # No backend is made: the lifespan that makes it never runs here.
    schema = create_app(lambda: None).openapi()  # type: ignore[arg-type,return-value]
    return {
        (method.upper(), path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }


def test_the_headings_are_read_as_routes() -> None:
    text = "## `POST /start`\nbody `top_k`\n## Other\n## `GET /list`\n`200`\n"
    assert documented_sections(text) == {
        ("POST", "/start"): "\nbody `top_k`\n",
        ("GET", "/list"): "\n`200`\n",
    }


def test_every_route_of_the_openapi_document_is_documented_and_no_other() -> None:
    documented = set(documented_sections(DOC.read_text()))
    served = set(openapi_operations())
    assert served - documented == set(), "routes missing from docs/api.md"
    assert documented - served == set(), "docs/api.md documents routes the app lacks"


@pytest.mark.parametrize("route", sorted(openapi_operations()), ids=" ".join)
def test_each_section_names_its_query_parameters_and_status_codes(
    route: tuple[str, str],
) -> None:
    section = documented_sections(DOC.read_text()).get(route)
    assert section is not None, f"{route} has no section in docs/api.md"
    operation = openapi_operations()[route]
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            assert f"`{parameter['name']}`" in section, (route, parameter["name"])
    for code in operation.get("responses", {}):
        assert re.search(rf"^\| {code} \|", section, re.MULTILINE), (route, code)
