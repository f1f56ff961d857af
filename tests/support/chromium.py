"""Debian's Chromium, headless, on a fresh profile: a page's DOM after its scripts ran, or its
screenshot, as a user's browser shows it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["CHROMIUM", "chromium"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium(*args: str) -> str:
    """Run headless Chromium with ``args`` (``--dump-dom URL``, ``--screenshot=FILE
    --window-size=W,H URL``); its standard output."""
    assert Path(CHROMIUM).exists(), "Chromium is missing: run `make services` (as root)"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
