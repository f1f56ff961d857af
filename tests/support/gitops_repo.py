"""A GitOps remote seeded with this repository's own ``manifests/``, as a team's fork has it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from support.gitrepo import GIT_ENV, README, GitRemote, git

__all__ = [
    "ROOT",
    "commit_now",
    "commit_to_remote",
    "manifest_files",
    "seed_manifests",
    "snapshot",
]

ROOT = Path(__file__).resolve().parents[2]


def commit_to_remote(
    remote: GitRemote, workdir: Path, message: str, change: Callable[[Path], None]
) -> str:
    """Clone, apply ``change`` to the work tree, commit and push to main; return the commit."""
    if workdir.exists():
        shutil.rmtree(workdir)
    remote.clone(workdir)
    change(workdir)
    git("add", "--all", cwd=workdir)
    if git("status", "--porcelain", cwd=workdir):  # a change that merged has committed itself
        git("commit", "--quiet", "-m", message, cwd=workdir)
    git("push", "--quiet", "origin", remote.branch, cwd=workdir)
    return git("rev-parse", "HEAD", cwd=workdir)


def commit_now(
    remote: GitRemote, workdir: Path, message: str, change: Callable[[Path], None]
) -> str:
    """As :func:`commit_to_remote`, dated now rather than the support code's fixed date: the
    rollout counts a step's age (and the status page the time in phase) from the pin's
    commit."""
    remote.clone(workdir)
    change(workdir)
    now = datetime.now(tz=UTC).isoformat()
    env = {**os.environ, **GIT_ENV, "GIT_AUTHOR_DATE": now, "GIT_COMMITTER_DATE": now}
    for args in (["add", "--all"], ["commit", "--quiet", "-m", message]):
        subprocess.run(["git", *args], cwd=workdir, env=env, check=True)
    git("push", "--quiet", "origin", remote.branch, cwd=workdir)
    return git("rev-parse", "HEAD", cwd=workdir)


def seed_manifests(remote: GitRemote, workdir: Path, *, model: str = "fraud-detector") -> str:
    """Add the repository's manifests/ to the remote's main branch, serving ``model``.

    Tests share one MLflow server, so each names its model uniquely; the environments'
    release entries and the pins' model annotations are renamed to match.
    """

    def copy(tree: Path) -> None:
        shutil.copytree(ROOT / "manifests", tree / "manifests")
        for path in (tree / "manifests" / "overlays").glob("*/*.yaml"):
            path.write_text(_serving(path.read_text(), model))

    return commit_to_remote(remote, workdir, "Add manifests", copy)


def manifest_files(model: str = "fraud-detector") -> dict[str, str]:
    """What :func:`seed_manifests` commits, as files by path: the README of a new remote and
    the repository's manifests/ serving ``model`` (to seed a MemoryRemote with)."""
    files = {"README.md": README}
    for path in sorted((ROOT / "manifests").rglob("*")):
        if path.is_file():
            name = path.relative_to(ROOT).as_posix()
            overlay = name.startswith("manifests/overlays/") and name.count("/") == 3
            text = path.read_text()
            files[name] = _serving(text, model) if overlay and name.endswith(".yaml") else text
    return files


def _serving(text: str, model: str) -> str:
    """An overlay file renamed to serve ``model`` (its release entry, its pin's annotation)."""
    text = text.replace("model: fraud-detector", f"model: {model}")
    return text.replace("sluice.dev/model-name: fraud-detector", f"sluice.dev/model-name: {model}")


def snapshot(remote: GitRemote) -> str:
    """Every ref of the remote with its commit: equal snapshots mean nothing was pushed."""
    return git("for-each-ref", "--format=%(refname) %(objectname)", cwd=remote.path)
