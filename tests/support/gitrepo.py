"""A real bare git repository with one commit on ``main``, for tests that clone, commit and push.

The seed commit is made the way a user would make it (clone, commit, push), with a fixed
identity and date so its hash is the same on every run, and with the user's own git
configuration shut out so that a global ``init.defaultBranch`` or ``commit.gpgsign`` cannot
change what the tests see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GIT_ENV",
    "README",
    "TEST_EMAIL",
    "TEST_NAME",
    "GitRemote",
    "create_git_remote",
    "git",
]

TEST_NAME = "Sluice Test"
#: What the seed commit's README.md says.
README = "# GitOps repository for Sluice tests\n"
TEST_EMAIL = "sluice-test@example.invalid"

#: Environment for git commands run by the test support code: fixed identity and dates, no
#: global or system configuration, never a credential prompt.
GIT_ENV = {
    "GIT_AUTHOR_NAME": TEST_NAME,
    "GIT_AUTHOR_EMAIL": TEST_EMAIL,
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": TEST_NAME,
    "GIT_COMMITTER_EMAIL": TEST_EMAIL,
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str | Path, cwd: Path | None = None) -> str:
    """Run git with :data:`GIT_ENV`; return its stdout, stripped; raise if it fails."""
    done = subprocess.run(
        ["git", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class GitRemote:
    """A bare repository that tests use as ``origin``."""

    path: Path
    branch: str
    initial_commit: str

    @property
    def url(self) -> str:
        """What ``git clone`` and ``git remote add`` take: the bare repository's path."""
        return str(self.path)

    def clone(self, dest: Path) -> Path:
        """Clone into ``dest`` with the test identity configured there; return ``dest``."""
        git("clone", "--quiet", "--branch", self.branch, self.url, dest)
        git("config", "user.name", TEST_NAME, cwd=dest)
        git("config", "user.email", TEST_EMAIL, cwd=dest)
        return dest

    def head(self, branch: str | None = None) -> str:
        """The commit a branch of the remote points at (default: :attr:`branch`)."""
        return git("rev-parse", f"refs/heads/{branch or self.branch}", cwd=self.path)


def create_git_remote(root: Path, *, branch: str = "main") -> GitRemote:
    """Create ``root/remote.git`` holding one commit (a README) on ``branch``."""
    bare = root / "remote.git"
    seed = root / "seed"
    git("init", "--quiet", "--bare", f"--initial-branch={branch}", bare)
    git("clone", "--quiet", str(bare), seed)
    git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=seed)
    (seed / "README.md").write_text(README)
    git("add", "README.md", cwd=seed)
    git("commit", "--quiet", "-m", "Initial commit", cwd=seed)
    git("push", "--quiet", "origin", branch, cwd=seed)
    shutil.rmtree(seed)
    initial = git("rev-parse", f"refs/heads/{branch}", cwd=bare)
    return GitRemote(path=bare, branch=branch, initial_commit=initial)
