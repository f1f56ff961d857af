"""`make demo` keeps telling its story: the demo runs end to end as a user starts it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_trains_registers_and_shows_the_registry(tmp_path: Path) -> None:
    """The demo registers two challengers and a refused weak model, then prints the registry."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("sluice")), "demo", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Registered fraud-detector version 1: quality gate passed" in out
    assert "Registered fraud-detector version 2: quality gate passed" in out
    assert "Registered fraud-detector version 3 without alias" in out
    registry = out[out.index("Registry state") :]
    rows = [line for line in registry.splitlines() if line.startswith("│ ")]
    assert [row.split("│")[2].strip() for row in rows] == ["-", "challenger", "-"]
    assert not list(tmp_path.glob("**/*.pid")), "the demo left a pid file behind"
