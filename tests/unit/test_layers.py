"""Imports go down only (docs/architecture.md): core <- capture, operator,
gateway <- cli; the kubectl plugin uses core alone. Checked on the source
(every import, those inside functions too) and on a real process: the
operator loads no capture stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testbed.imports import PACKAGE, imports_of

LAYERS = ("core", "capture", "operator", "gateway")
# What each part may not import: of ours, and of the heavy third-party stacks.
FORBIDDEN: dict[str, set[str]] = {
    "core": {"streamgrid.capture", "streamgrid.operator", "streamgrid.gateway", "av"},
    # A capture pod's memory: no OpenCV, NumPy, pydantic or prometheus_client (issue 22).
    "capture": {
        "streamgrid.operator",
        "streamgrid.gateway",
        "kopf",
        "kubernetes",
        "fastapi",
        "cv2",
        "numpy",
        "pydantic",
        "pydantic_settings",
        "prometheus_client",
    },
    "operator": {"streamgrid.capture", "streamgrid.gateway", "av", "cv2", "numpy", "fastapi"},
    "gateway": {"streamgrid.capture", "streamgrid.operator", "av", "kopf"},
    "kubectl_plugin": {"streamgrid.capture", "streamgrid.operator", "streamgrid.gateway", "av"},
}


def part_of(path: Path) -> str | None:
    rel = path.relative_to(PACKAGE).parts
    if rel[0] in LAYERS:
        return rel[0]
    return "kubectl_plugin" if rel == ("kubectl_plugin.py",) else None


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = part_of(path)
        if part is None:
            continue
        for name in sorted(imports_of(path)):
            for banned in FORBIDDEN[part]:
                if name == banned or name.startswith(banned + "."):
                    found.append(f"{path.relative_to(PACKAGE.parent)}: imports {name}")
    return found


def test_imports_go_down_only() -> None:
    assert not violations(), "\n".join(violations())


def test_the_checker_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    """The rule above would pass on a checker that saw nothing."""
    source = PACKAGE / "operator" / "reconcile.py"
    assert "streamgrid.core.crd" in imports_of(source)
    cli = imports_of(PACKAGE / "cli.py")  # imports inside functions
    assert "streamgrid.gateway.app" in cli and "uvicorn" in cli


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        (
            "streamgrid.operator.__main__",
            ("av", "cv2", "numpy", "streamgrid.capture", "kubernetes", "pykube"),
        ),
        (
            "streamgrid.capture.__main__",
            (
                "cv2",
                "numpy",
                "pydantic",
                "pydantic_settings",
                "prometheus_client",
                "boto3",
                "streamgrid.core.crd",
                "streamgrid.core.settings",
                "streamgrid.core.grid",
                "streamgrid.gateway",
                "streamgrid.operator",
            ),
        ),
        ("streamgrid.gateway.kube", ("av", "streamgrid.capture", "streamgrid.operator")),
        ("streamgrid.gateway.app", ("av", "streamgrid.capture", "streamgrid.operator")),
        ("streamgrid.kubectl_plugin", ("av", "cv2", "numpy", "streamgrid.gateway", "kopf")),
    ],
)
def test_a_process_loads_only_its_own_stack(module: str, absent: tuple[str, ...]) -> None:
    # A module with a load() (the operator's): what its process imports is what load() does.
    code = (
        f"import sys, {module}\n"
        f"getattr({module}, 'load', lambda: None)()\n"
        f"print(' '.join(m for m in {absent!r} if sys.modules.get(m) is not None or "
        f"any(k.startswith(m + '.') for k in sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "", f"{module} loads {run.stdout.strip()}"


def test_the_operators_load_brings_in_its_handlers_and_kopf() -> None:
    """The check above means something only if load() loads the operator."""
    code = (
        "import sys, streamgrid.operator.__main__ as m\n"
        "before = {'kopf', 'streamgrid.operator.handlers'} & set(sys.modules)\n"
        "m.load()\n"
        "print(sorted(before), sorted({'kopf', 'streamgrid.operator.handlers'} & set(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["[]", "['kopf',", "'streamgrid.operator.handlers']"]
