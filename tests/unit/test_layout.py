"""The layout of the suite: every test module sits in a group (unit/, api/, process/)
and is marked with it, and no module imports a test module or conftest.py: shared
helpers live in tests/support/, shared fixtures in tests/conftest.py."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
GROUPS = ("unit", "api", "process")


def module_name(path: Path) -> str:
    """The dotted name `path` imports as (`tests.api.test_x`, `tests.support.__init__`)."""
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imported_modules(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, the text of `module`,
    relative ones resolved; for `from package import name`, also `package.name` (it
    may be a module)."""
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                found = f"{base}.{node.module}" if node.module else base
            else:
                found = node.module or ""
            yield node.lineno, found
            for alias in node.names:
                yield node.lineno, f"{found}.{alias.name}"


def is_test_module(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def test_no_module_imports_a_test_module_or_conftest() -> None:
    sources = sorted(TESTS.rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sources
        for line, module in imported_modules(path.read_text(), module_name(path))
        if is_test_module(module)
    ]
    assert not found, (
        "shared helpers belong in tests/support/ and shared fixtures in tests/conftest.py:\n"
        + "\n".join(found)
    )


def test_the_check_sees_relative_and_absolute_imports() -> None:
    source = (
        "from .test_collections import link\n"
        "from ..support.content import link\n"
        "from ..support import certs\n"
        "from .. import conftest\n"
        "import tests.process.test_cli\n"
        "def f():\n"
        "    from ..unit.test_paths import MALFORMED\n"
    )
    found = {m for _, m in imported_modules(source, "tests.api.test_x") if is_test_module(m)}
    assert found == {
        "tests.api.test_collections",
        "tests.conftest",
        "tests.process.test_cli",
        "tests.unit.test_paths",
    }


def test_every_test_module_sits_in_a_group() -> None:
    stray = [
        str(path.relative_to(ROOT))
        for path in TESTS.rglob("test_*.py")
        if path.relative_to(TESTS).parts[0] not in GROUPS or len(path.relative_to(TESTS).parts) != 2
    ]
    assert not stray, f"test modules outside tests/unit, tests/api and tests/process: {stray}"


def test_tests_are_marked_with_their_group(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("api") is None
