"""``sluice serve`` started as a user starts it, for a test that opens its status page: the
page's first answer once it listens, and the server stopped (SIGTERM, then killed) afterwards."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests

__all__ = ["SLUICE", "serving_page"]

SLUICE = str(Path(sys.executable).with_name("sluice"))


@contextmanager
def serving_page(
    args: Sequence[str], *, port: int, env: Mapping[str, str], cwd: Path
) -> Iterator[tuple[str, requests.Response]]:
    """Run ``sluice serve ARGS`` on ``port``; yield the page's URL and its first answer."""
    serve = subprocess.Popen(
        [SLUICE, "serve", *args], env=dict(env), cwd=cwd,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                page = requests.get(url, timeout=60)
                break
            except requests.ConnectionError:
                assert serve.poll() is None, serve.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "sluice serve did not listen"
                time.sleep(0.3)
        yield url, page
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        finally:
            serve.kill()
