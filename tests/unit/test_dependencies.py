"""What `src/` imports is what pyproject.toml declares, both ways: a third-party import must be
a declared dependency (not one that happens to come along with another, nor a dev one), and a
declared dependency must be imported somewhere in `src/`. Import names are mapped to
distributions by the installed metadata (`packages_distributions`), so `yaml` is PyYAML."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "rdev"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """The dependencies, and the optional extras' (`rdev[otel]`: imported only when present)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [d for group in project.get("optional-dependencies", {}).values() for d in group]
    return {
        _normal(re.match(r"[A-Za-z0-9._-]+", d)[0])  # type: ignore[index]
        for d in [*project["dependencies"], *extras]
    }


def _imports() -> dict[str, set[str]]:
    """Top-level import name → the modules of src/ that import it."""
    modules: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "rdev":
                    modules.setdefault(top, set()).add(path.relative_to(SRC).as_posix())
    return modules


def _providers(top: str) -> set[str]:
    """The distributions that provide an import name (several for a namespace package such as
    `opentelemetry`)."""
    return {_normal(d) for d in packages_distributions().get(top, [top])}


def test_every_third_party_import_of_src_is_a_declared_dependency() -> None:
    declared = _declared()
    undeclared = {
        top: sorted(where)
        for top, where in _imports().items()
        if not _providers(top) & declared  # a namespace package: one declared provider is enough
    }
    assert not undeclared, f"declare in [project.dependencies] (uv add 'pkg==X.Y.Z'): {undeclared}"


def test_every_declared_dependency_is_imported_by_src() -> None:
    provided = {d for top in _imports() for d in _providers(top)}
    unused = sorted(_declared() - provided)
    assert not unused, f"nothing in src/ imports these; remove them (uv remove): {unused}"
