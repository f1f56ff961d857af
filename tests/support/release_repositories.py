"""Both ReleaseRepository implementations behind one test harness, for the contract tests.

A :class:`Harness` holds a remote with one commit (a README) on ``main`` and makes workspaces
on it; it also plays everyone else who writes to the remote (a person pushing, a merge button)
and the faults (an unreachable remote, a hook refusing pushes), each the way that is native to
the implementation: a bare repository and clones on disk for
:class:`~controller.backends.git_repo.GitWorkspace`, a
:class:`~controller.testing.MemoryRemote` for :class:`~controller.testing.MemoryReleaseRepository`.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from controller.backends.git_repo import GitWorkspace
from controller.ports import ReleaseRepository
from controller.testing import MemoryReleaseRepository
from support.gitrepo import README, create_git_remote, git

__all__ = ["README", "GitHarness", "Harness", "MemoryHarness"]


class Harness(Protocol):
    """A remote with ``README.md`` on ``main``, its workspaces and its other writers."""

    url: str

    def workspace(self, name: str = "controller") -> ReleaseRepository: ...

    def push(
        self, branch: str, changes: Mapping[str, str | None], message: str, *, start: str = "main"
    ) -> str:
        """Another writer's commit on ``branch`` (made from ``start`` if new); its sha."""
        ...

    def merge(self, branch: str, into: str, message: str) -> str:
        """Another writer merges ``branch`` into ``into`` with a merge commit; its sha."""
        ...

    def tip(self, branch: str) -> str | None: ...

    def files(self, branch: str) -> dict[str, str]: ...

    def unreachable(self) -> None:
        """From now on the remote cannot be reached."""
        ...

    def refuse_pushes(self, reason: str) -> None:
        """From now on the remote refuses every push, saying ``reason``."""
        ...


def _show(git_dir: Path, spec: str) -> str:
    """A blob's exact text (the ``git`` helper strips its output)."""
    done = subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", spec], capture_output=True, check=True, text=True
    )
    return done.stdout


class GitHarness:
    """A bare repository on disk; other writers clone it, commit and push."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.remote = create_git_remote(root)
        self.url = self.remote.url
        self._writers = itertools.count()

    def workspace(self, name: str = "controller") -> GitWorkspace:
        return GitWorkspace(
            self.url, self.root / f"cache-{name}", max_attempts=3, backoff_seconds=0
        )

    def _clone(self) -> Path:
        work = self.root / f"writer-{next(self._writers)}"
        return self.remote.clone(work)

    def push(
        self, branch: str, changes: Mapping[str, str | None], message: str, *, start: str = "main"
    ) -> str:
        work = self._clone()
        known = git("branch", "--remotes", "--list", f"origin/{branch}", cwd=work)
        git("checkout", "--quiet", "-B", branch, f"origin/{branch if known else start}", cwd=work)
        for path, text in changes.items():
            if text is None:
                (work / path).unlink()
            else:
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).write_text(text)
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        git("push", "--quiet", "origin", branch, cwd=work)
        return git("rev-parse", "HEAD", cwd=work)

    def merge(self, branch: str, into: str, message: str) -> str:
        work = self._clone()
        git("checkout", "--quiet", "-B", into, f"origin/{into}", cwd=work)
        git("merge", "--quiet", "--no-ff", "-m", message, f"origin/{branch}", cwd=work)
        git("push", "--quiet", "origin", into, cwd=work)
        return git("rev-parse", "HEAD", cwd=work)

    def tip(self, branch: str) -> str | None:
        out = git(
            "for-each-ref", "--format=%(objectname)", f"refs/heads/{branch}", cwd=self.remote.path
        )
        return out or None

    def files(self, branch: str) -> dict[str, str]:
        names = git("ls-tree", "-r", "--name-only", branch, cwd=self.remote.path).splitlines()
        return {name: _show(self.remote.path, f"{branch}:{name}") for name in names}

    def unreachable(self) -> None:
        shutil.move(self.remote.path, self.root / "moved-away.git")

    def refuse_pushes(self, reason: str) -> None:
        hook = self.remote.path / "hooks" / "pre-receive"
        hook.write_text(f"#!/bin/sh\necho '{reason}' >&2\nexit 1\n")
        hook.chmod(0o755)


class MemoryHarness:
    """A :class:`~controller.testing.MemoryRemote`; other writers commit to it directly."""

    def __init__(self) -> None:
        self.first = MemoryReleaseRepository({"README.md": README}, max_attempts=3)
        self.remote = self.first.remote
        self.url = self.remote.url
        self.workspaces: list[MemoryReleaseRepository] = []

    def workspace(self, name: str = "controller") -> MemoryReleaseRepository:
        made = self.first.clone(author=f"Sluice {name}")
        self.workspaces.append(made)
        return made

    def push(
        self, branch: str, changes: Mapping[str, str | None], message: str, *, start: str = "main"
    ) -> str:
        return self.remote.commit(branch, changes, message, start=start)

    def merge(self, branch: str, into: str, message: str) -> str:
        return self.remote.merge(branch, into, message)

    def tip(self, branch: str) -> str | None:
        return self.remote.tip(branch)

    def files(self, branch: str) -> dict[str, str]:
        return self.remote.files(branch)

    def unreachable(self) -> None:
        for workspace in self.workspaces:
            workspace.outage = True

    def refuse_pushes(self, reason: str) -> None:
        for workspace in self.workspaces:
            workspace.refusal = reason
