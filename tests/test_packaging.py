"""What a user installs: the controller alone, the local extra for the stack, and the lock.

`pip install sluice` is the controller's image; `make setup` installs the `dev` and `local`
extras from `requirements.lock`. These tests read the repository's own files, so a pin moved in
one place and not the other fails here rather than in a user's `pip install`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for line in requirements:
        name, _, version = line.partition("==")
        pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


def _lock() -> dict[str, str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return _pins([line for line in lines if line and not line.startswith("#")])


def test_every_direct_pin_is_the_locked_version() -> None:
    """requirements.lock holds every package pyproject.toml pins, at the same version, and pins
    everything it holds exactly."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = list(project["dependencies"])
    for extra in ("local", "dev"):
        direct += project["optional-dependencies"][extra]
    lock = _lock()
    for name, version in _pins(direct).items():
        assert lock.get(name) == version, f"{name}: pyproject {version}, lock {lock.get(name)}"
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in lock.values()), lock


def test_the_controller_needs_none_of_the_local_extra() -> None:
    """The local stack's packages are in the `local` extra, not the controller's dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = _pins(project["dependencies"])
    local = _pins(project["optional-dependencies"]["local"])
    assert {"kserve", "uvloop", "httptools", "psycopg2-binary"} <= set(local)
    assert not set(local) & set(base)


def test_a_command_that_starts_the_stack_names_the_missing_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without the extra, `sluice local up` and `sluice demo` say what to install (exit 2) and
    start nothing."""
    import importlib.util

    from controller.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "kserve" else real(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    for argv, command in ((["local", "up"], "sluice local up"), (["demo"], "sluice demo")):
        assert main(argv) == 2
        assert capsys.readouterr().err == (
            f"sluice: error: {command} needs Sluice's local extra (kserve not installed): "
            "pip install 'sluice[local]' (make setup installs it)\n"
        )
    assert not any(tmp_path.iterdir())


def test_the_controller_runs_without_the_local_extra() -> None:
    """`sluice serve`'s modules import nothing from the local extra (the image lacks it)."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('kserve', 'uvloop', 'httptools', 'psycopg2'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import controller.commands.serve, controller.commands.rollout\n"
        "import controller.commands.propose, controller.commands.status\n"
        "from controller.cli import main\n"
        "sys.exit(main(['--help']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
