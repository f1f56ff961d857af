"""The README's console blocks, read and run as a user would.

Several tests hold a README section to what it says: the commands are the ``$`` lines of the
section's console block (:func:`console_commands`), so the section and its test cannot drift
apart. ``tests/test_by_hand.py`` and ``tests/test_own_model.py`` run a whole section in a fresh
clone (:class:`ConsoleSession`); ``tests/test_init_forge.py`` and
``tests/test_retrain_report.py`` run one block each.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

from support.gitops_repo import ROOT
from support.local_env import EVAL_ENV, exports

__all__ = ["BIN", "README", "ConsoleSession", "console_commands"]

README = ROOT / "README.md"
#: Where the installed console scripts (``sluice``) and this Python are.
BIN = Path(sys.executable).parent


def console_commands(heading: str, *, containing: str | None = None) -> list[str]:
    """The ``$`` lines of a console block of the README's section under ``heading`` (its
    whole line, as ``"## By hand"``; the section ends at the next ``## `` heading): the first
    block, or the one block that contains ``containing``."""
    readme = README.read_text(encoding="utf-8")
    assert f"\n{heading}" in readme, f"the README has no {heading!r}"
    section = readme.split(f"\n{heading}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```console\n(.*?)```", section, flags=re.DOTALL)
    if containing is None:
        assert blocks, f"the {heading.lstrip('# ')} section has no console block"
        block = blocks[0]
    else:
        (block,) = [b for b in blocks if containing in b]
    return [line[2:] for line in block.splitlines() if line.startswith("$ ")]


class ConsoleSession:
    """A README section's commands run in turn in a fresh clone of the committed repository,
    each through bash in a subprocess of its own, with the defaults and nothing exported but
    what ``eval "$(sluice local env)"`` exports (parsed here as the shell would).

    Leaving the ``with`` block always runs ``sluice local down`` (a second one stops nothing,
    and a failed run leaves no stack behind) and prints how long each command took.
    """

    def __init__(self, tmp_path: Path, label: str) -> None:
        self.label = label
        self.checkout = tmp_path / "checkout"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(self.checkout)], check=True)
        self.env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "120"}
        #: (command, its stdout, seconds it took), in the order run.
        self.outputs: list[tuple[str, str, float]] = []
        self._started = time.monotonic()

    def run(self, commands: Iterable[str]) -> Iterator[tuple[str, str]]:
        """Run each command (asserting that it exits 0) and yield it with its stdout."""
        for command in commands:
            begun = time.monotonic()
            shell = "sluice local env" if command == EVAL_ENV else command
            done = subprocess.run(
                ["bash", "-c", shell], cwd=self.checkout, env=self.env,
                capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            self.outputs.append((command, done.stdout, time.monotonic() - begun))
            assert done.returncode == 0, (
                f"$ {command}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
            if command == EVAL_ENV:
                self.env.update(exports(done.stdout))
            yield command, done.stdout

    def run_all(self, commands: Iterable[str]) -> None:
        """Run every command, as :meth:`run` does, for a test that only reads the outputs."""
        for _ in self.run(commands):
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        subprocess.run(
            [str(BIN / "sluice"), "local", "down"], cwd=self.checkout, env=self.env,
            capture_output=True, check=False, timeout=120,
        )  # fmt: skip
        timings = ", ".join(
            f"{command.split(' --')[0]} {took:.1f}s" for command, _, took in self.outputs
        )
        print(f"\n{self.label}: {time.monotonic() - self._started:.1f} s in all: {timings}")
