"""The faces do not import each other, and the core imports neither face nor a web framework.

Read from the source (every import statement, at any depth), not by importing: `server/` (MCP tools, their context,
stdio) never imports `api/`, FastAPI or Starlette; `shared/` (the sandbox aside, which is an HTTP server by nature)
imports no web framework and neither face. Transitively too: following our own modules' imports from `server/` or
`shared/` never reaches one of them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn")
OUR_PACKAGES = ("api", "server", "shared")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path) -> Iterator[str]:
    """Every module an import statement of the file names (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def top(module: str) -> str:
    return module.split(".")[0]


ALL = {name: path for package in OUR_PACKAGES for name, path in modules(package).items()}
GRAPH = {
    name: {m for m in imports_of(name, path) if top(m) in (*OUR_PACKAGES, *WEB_FRAMEWORKS)}
    for name, path in ALL.items()
}


def reachable(start: str) -> set[str]:
    """Our modules and the frameworks reachable from `start` by import statements."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        current = todo.pop()
        for imported in GRAPH.get(current, set()):
            target = imported if imported in ALL or top(imported) in WEB_FRAMEWORKS else imported.rpartition(".")[0]
            if target in seen:
                continue
            seen.add(target)
            if target in ALL and not target.startswith("shared.sandbox"):
                todo.append(target)
    return seen


def forbidden_for(module: str) -> tuple[str, ...]:
    if module.startswith("server"):
        return ("api", *WEB_FRAMEWORKS)
    return ("api", "server", *WEB_FRAMEWORKS)


CHECKED = sorted(name for name in ALL if top(name) in ("server", "shared") and not name.startswith("shared.sandbox"))


def test_the_graph_covers_both_packages() -> None:
    assert any(name.startswith("server.") for name in CHECKED)
    assert "shared.services.kpi" in CHECKED and "shared.operations" in CHECKED
    assert "api.main" in ALL


@pytest.mark.parametrize("module", CHECKED)
def test_a_core_or_mcp_module_reaches_neither_the_other_face_nor_a_web_framework(module: str) -> None:
    bad = sorted(name for name in reachable(module) if top(name) in forbidden_for(module))
    assert bad == [], f"{module} reaches {bad}"


def test_the_check_would_see_a_forbidden_import(tmp_path: Path) -> None:
    leaky = tmp_path / "leaky.py"
    leaky.write_text("def f():\n    from api.main import create_app\n    from starlette import routing\n")
    found = set(imports_of("server.leaky", leaky))
    assert {"api.main", "starlette"} <= found
