"""A bare repository (what GitHub would hold) with a working clone that pushes to it.

Tests of the GitHub double and of the GitHub forge both need branches pushed for real; one
template repository per module is copied per test, which is faster than ``git init`` each time.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from support.gitrepo import create_git_remote, git

__all__ = ["WorkingRemote", "copy_remote", "make_template"]


@dataclass
class WorkingRemote:
    """The bare repository GitHub would hold, and a working clone that pushes to it."""

    bare: Path
    work: Path

    def commit(
        self,
        branch: str,
        filename: str,
        content: str,
        *,
        start: str = "main",
        message: str | None = None,
        allow_empty: bool = False,
    ) -> str:
        """Commit one file on `branch` (made from `start` if new), push it, return the sha."""
        git("fetch", "--quiet", "origin", cwd=self.work)
        known = git("branch", "--remotes", "--list", f"origin/{branch}", cwd=self.work)
        from_ref = f"origin/{branch}" if known else f"origin/{start}"
        git("checkout", "--quiet", "-B", branch, from_ref, cwd=self.work)
        (self.work / filename).write_text(content)
        git("add", filename, cwd=self.work)
        empty = ["--allow-empty"] if allow_empty else []
        text = message or f"Change {filename} on {branch}"
        git("commit", "--quiet", *empty, "-m", text, cwd=self.work)
        git("push", "--quiet", "origin", branch, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def log(self, ref: str, fmt: str) -> str:
        """`git log -1 --format=fmt ref`, read from the bare repository."""
        return git("log", "-1", f"--format={fmt}", ref, cwd=self.bare)


def make_template(root: Path) -> WorkingRemote:
    """A bare repository with one commit on main and a clone of it."""
    origin = create_git_remote(root)
    return WorkingRemote(origin.path, origin.clone(root / "work"))


def copy_remote(template: WorkingRemote, dest: Path) -> WorkingRemote:
    """A fresh copy of ``template`` under ``dest`` whose clone pushes to the copy."""
    bare = shutil.copytree(template.bare, dest / "gitops.git")
    work = shutil.copytree(template.work, dest / "work")
    git("remote", "set-url", "origin", str(bare), cwd=work)
    return WorkingRemote(bare, work)
