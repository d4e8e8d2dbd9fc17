"""What a module of the package imports, read from its source: every import,
those inside functions too, relative ones made absolute, and none under
``if TYPE_CHECKING:`` (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "streamgrid"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path | None:
    """The source of a module of the package, None for anything else."""
    if name != "streamgrid" and not name.startswith("streamgrid."):
        return None
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _runs(tree: ast.AST) -> list[ast.AST]:
    """The nodes of ``tree`` that execute: ``if TYPE_CHECKING:`` bodies left out."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return found


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, and for ``from m import n`` also ``m.n``."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in _runs(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def closure(*entry_points: str) -> tuple[set[str], set[str]]:
    """(the package's modules these entry points reach, the top-level names
    of everything else they import)."""
    ours: set[str] = set()
    others: set[str] = set()
    todo = list(entry_points)
    while todo:
        name = todo.pop()
        path = module_path(name)
        if path is None or name in ours:
            continue
        ours.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # its packages' __init__
        for imported in imports_of(path):
            if imported.startswith("streamgrid"):
                todo.append(imported)
            elif not imported.startswith("."):
                others.add(imported.split(".")[0])
    return ours, others
