"""The layering of DESIGN.md, checked on the source: arrows point down only.

pages/app -> core -> jobstore. core never imports streamlit; jobstore imports
neither core nor streamlit; the engine knows nothing of Tarana or stations; only
the settings module reads the environment.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in modules(package):
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


def test_packages_exist() -> None:
    assert modules("core") and modules("jobstore")


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("core", ("streamlit", "pages", "app")),
        ("jobstore", ("core", "streamlit", "pages", "app")),
        ("core/engine", ("core.tarana", "core.sync", "core.runtime", "core.scheduler")),
    ],
)
def test_no_upward_imports(package: str, forbidden: tuple[str, ...]) -> None:
    assert offenders(package, forbidden) == []


def test_only_settings_reads_the_environment() -> None:
    readers = []
    for package in ("core", "jobstore"):
        for path in modules(package):
            text = path.read_text(encoding="utf-8")
            if "os.environ" in text or "os.getenv" in text:
                readers.append(str(path.relative_to(ROOT)))
    assert readers == ["core/settings.py"]


def test_the_checker_sees_a_wrong_way_arrow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import streamlit as st\nfrom core.engine import Engine\n")
    assert {"streamlit", "core.engine"} <= imports_of(bad)
