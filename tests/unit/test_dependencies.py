"""Each deployable's dependency group (pyproject.toml [dependency-groups],
what its image installs) holds what the component imports, and only
requirements the whole tool's list has too (``pip install streamgrid``)."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from testbed.imports import closure

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"
ENTRY_POINTS = {
    "capture": ["streamgrid.capture.__main__"],
    "operator": ["streamgrid.operator.__main__", "streamgrid.operator.uninstall"],
    "gateway": ["streamgrid.cli"],  # `streamgrid serve`, the gateway image's command
}
# Imported by us but installed by another requirement of the group.
PROVIDED_BY = {
    "botocore": "boto3",
    "starlette": "fastapi",
    "pydantic": "pydantic-settings",
    "pydantic_core": "pydantic-settings",
    "urllib3": "kubernetes",
}


def project() -> dict[str, object]:
    loaded: dict[str, object] = tomllib.loads(PYPROJECT.read_text())
    return loaded


def name_of(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def groups() -> dict[str, list[str]]:
    found: dict[str, list[str]] = project()["dependency-groups"]  # type: ignore[assignment]
    return found


def test_every_group_requirement_is_the_whole_tools_requirement() -> None:
    whole = set(project()["project"]["dependencies"])  # type: ignore[index]
    for group, requirements in groups().items():
        assert set(requirements) <= whole, (group, set(requirements) - whole)
    named = {name_of(r) for rs in groups().values() for r in rs}
    assert named == {name_of(r) for r in whole}  # nothing in the whole list no part uses


@pytest.mark.parametrize("component", sorted(ENTRY_POINTS))
def test_a_group_holds_what_its_component_imports(component: str) -> None:
    _, imported = closure(*ENTRY_POINTS[component])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "streamgrid"}
    distributions = packages_distributions()
    needed = set()
    for module in third_party:
        assert module in distributions, f"{module}: no installed distribution provides it"
        needed.add(PROVIDED_BY.get(module, distributions[module][0]).lower().replace("_", "-"))
    group = {name_of(r) for r in groups()[component]}
    assert needed <= group, f"{component} imports {sorted(needed - group)}, not in its group"


def test_the_operator_and_gateway_groups_carry_no_capture_stack() -> None:
    assert "av" not in {name_of(r) for r in groups()["operator"] + groups()["gateway"]}
    assert not {"numpy", "opencv-python-headless"} & {name_of(r) for r in groups()["operator"]}
