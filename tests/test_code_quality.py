"""The checks `make lint` runs, kept green by the suite that CI runs."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import controller

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PATHS = [p for p in ("controller", "tests", "models", "benchmarks") if (ROOT / p).is_dir()]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_check_is_clean() -> None:
    """`ruff check` finds nothing."""
    result = run(str(BIN / "ruff"), "check", *PATHS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    """The code is formatted as `ruff format` would."""
    result = run(str(BIN / "ruff"), "format", "--check", *PATHS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    """`mypy --strict controller` finds nothing."""
    result = run(str(BIN / "mypy"), "--strict", "controller")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_are_kept() -> None:
    """`lint-imports` keeps every contract in pyproject.toml: the layers, and who may import
    the command line, the emulator and the storage and cluster libraries."""
    result = run(str(BIN / "lint-imports"), "--no-logo", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def _modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(controller.__path__, prefix="controller.")
        if not info.name.endswith("__main__")
    ]


@pytest.mark.parametrize("name", _modules())
def test_public_api_is_declared(name: str) -> None:
    """Every module lists its public API in `__all__`, and every listed name exists."""
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    missing = [symbol for symbol in exported if not hasattr(module, symbol)]
    assert not missing, f"{name}.__all__ names missing symbols {missing}"


def _imported_modules(tree: ast.Module) -> set[str]:
    """The dotted name of every module an import anywhere in ``tree`` may load: ``import a.b``
    gives ``a.b``, ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a module), and
    ``from . import b`` gives ``b``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = f"{node.module}." if node.module else ""
            if node.module:
                names.add(node.module)
            names.update(prefix + alias.name for alias in node.names)
    return names


def test_test_files_do_not_import_each_other() -> None:
    """No ``tests/test_*.py`` imports another, as ``test_x``, ``tests.test_x`` or relatively,
    at the top or inside a function: shared helpers live in ``tests/support/`` and shared
    fixtures in ``tests/conftest.py`` (which import no test file either), so each test file
    stands alone."""
    tests = ROOT / "tests"
    files = sorted(tests.glob("test_*.py"))
    own = {path.stem for path in files}
    assert "test_code_quality" in own
    found = set()
    for path in [*files, tests / "conftest.py", *sorted((tests / "support").rglob("*.py"))]:
        tree = ast.parse(path.read_text(), filename=str(path))
        for name in _imported_modules(tree):
            first = name.removeprefix("tests.").split(".")[0]
            if first in own:
                found.add(f"{path.relative_to(tests)} imports {first}")
    assert not found, "move what test files share to tests/support/ or tests/conftest.py: " + (
        "; ".join(sorted(found))
    )
