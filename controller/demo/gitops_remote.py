"""The demo's Git side: a GitOps remote seeded from this checkout, and a merge as a person does it.

The demo must not touch the user's own repository or remote, so it seeds a bare repository of
its own with this checkout's ``manifests/``, merges proposals there with plain git, the way
a reviewer's merge button would, and commits a policy change the way a team member would.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["commit_to_main", "git_output", "merge_branch", "seed_gitops_remote"]

_IDENTITY = ["-c", "user.name=Sluice demo", "-c", "user.email=demo@sluice.invalid"]


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def git_output(remote: Path, *args: str) -> str:
    """What ``git ARGS`` prints in the demo's remote (``log``, ``diff``, ...), stripped."""
    return _git(*args, cwd=remote)


def seed_gitops_remote(repository_root: Path, remote: Path) -> Path:
    """Create ``remote`` (bare) holding ``manifests/`` of the checkout on ``main``."""
    remote.parent.mkdir(parents=True, exist_ok=True)
    _git("init", "--quiet", "--bare", "--initial-branch=main", str(remote), cwd=remote.parent)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        _git("clone", "--quiet", str(remote), str(work), cwd=Path(tmp))
        _git("checkout", "--quiet", "-B", "main", cwd=work)
        shutil.copytree(repository_root / "manifests", work / "manifests")
        _git("add", "--all", cwd=work)
        _git(*_IDENTITY, "commit", "--quiet", "-m", "Seed the GitOps repository", cwd=work)
        _git("push", "--quiet", "origin", "main", cwd=work)
    return remote


def merge_branch(remote: Path, branch: str) -> str:
    """Merge ``branch`` into ``main`` with a merge commit and push; return the new main."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        _git("clone", "--quiet", "--branch", "main", str(remote), str(work), cwd=Path(tmp))
        message = f"Merge {branch}"
        _git(*_IDENTITY, "merge", "--quiet", "--no-ff", f"origin/{branch}", "-m", message, cwd=work)
        _git("push", "--quiet", "origin", "main", cwd=work)
        return _git("rev-parse", "HEAD", cwd=work)


def commit_to_main(remote: Path, subject: str, edit: Callable[[Path], None]) -> tuple[str, str]:
    """Apply ``edit`` to a clone of ``main``, commit everything it changed, push; return the new
    commit and its diff."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        _git("clone", "--quiet", "--branch", "main", str(remote), str(work), cwd=Path(tmp))
        edit(work)
        _git("add", "--all", cwd=work)
        _git(*_IDENTITY, "commit", "--quiet", "-m", subject, cwd=work)
        _git("push", "--quiet", "origin", "main", cwd=work)
        return _git("rev-parse", "HEAD", cwd=work), _git("show", "--format=", "HEAD", cwd=work)
