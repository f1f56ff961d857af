"""Real git operations on the bare repositories behind the local GitHub API server.

Everything here runs the `git` binary against a bare repository, so what the server reports
(branch tips, mergeability, merge commits) is what git itself says, never a simulation.
Merges use `git merge-tree --write-tree` (the same merge-ort machinery as `git merge`, and the
way a server without a worktree merges), `git commit-tree` and a compare-and-swap
`git update-ref`, so a push racing with a merge makes the merge fail as it does on GitHub.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SEP = "\x00"
# Like a server's git: no user or system configuration (commit.gpgsign, merge drivers...).
_ISOLATED = {"LC_ALL": "C", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


@dataclass(frozen=True)
class CommitInfo:
    """The fields of one commit that the commits endpoint reports."""

    sha: str
    tree: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    author_date: str
    committer_name: str
    committer_email: str
    committer_date: str
    message: str


@dataclass(frozen=True)
class Identity:
    """A git author or committer."""

    name: str
    email: str


GITHUB_COMMITTER = Identity("GitHub", "noreply@github.com")


class BareRepo:
    """A bare git repository on disk, driven only through the `git` binary."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir

    def _git(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **_ISOLATED, **(env or {})},
        )

    def resolve(self, ref: str) -> str | None:
        """The commit `ref` names (a sha, branch or tag), or None when it names none."""
        if not ref or ref.startswith("-"):
            return None
        result = self._git(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"
        )
        return result.stdout.strip() if result.returncode == 0 else None

    def branch_tip(self, branch: str) -> str | None:
        """The commit at the tip of `branch`, or None when there is no such branch."""
        return self.resolve(f"refs/heads/{branch}")

    def default_branch(self) -> str:
        """The branch HEAD of the bare repository points at (read as git reads it)."""
        head = (self.git_dir / "HEAD").read_text().strip()
        prefix = "ref: refs/heads/"
        return head.removeprefix(prefix) if head.startswith(prefix) else "main"

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether `ancestor` is reachable from `descendant`."""
        return self._git("merge-base", "--is-ancestor", ancestor, descendant).returncode == 0

    def merge_tree(self, base: str, head: str) -> str | None:
        """The tree of merging `head` into `base`, or None when the merge conflicts."""
        result = self._git("merge-tree", "--write-tree", "--no-messages", base, head)
        if result.returncode != 0:
            return None
        return result.stdout.splitlines()[0].strip()

    def commit_tree(
        self, tree: str, parents: list[str], message: str, author: Identity, committer: Identity
    ) -> str:
        """Write a commit object and return its sha."""
        parent_args = [arg for parent in parents for arg in ("-p", parent)]
        env = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": committer.name,
            "GIT_COMMITTER_EMAIL": committer.email,
        }
        result = self._git("commit-tree", tree, *parent_args, "-F", "-", stdin=message, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"git commit-tree failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def move_branch(self, branch: str, new: str, expected_old: str, reason: str) -> bool:
        """Point `branch` at `new` if it is still at `expected_old`; False if it moved."""
        result = self._git("update-ref", "-m", reason, f"refs/heads/{branch}", new, expected_old)
        return result.returncode == 0

    def subjects(self, base: str, head: str) -> list[str]:
        """Subjects of the commits on `head` but not on `base`, oldest first."""
        result = self._git("log", "--reverse", "--format=%s", f"{base}..{head}")
        return [line for line in result.stdout.splitlines() if line]

    def count_commits(self, base: str, head: str) -> int:
        """How many commits `head` has that `base` has not."""
        result = self._git("rev-list", "--count", f"{base}..{head}")
        return int(result.stdout.strip() or 0)

    def diff_stats(self, base: str, head: str) -> tuple[int, int, int]:
        """Additions, deletions and changed files between the merge base and `head`."""
        result = self._git("diff", "--numstat", f"{base}...{head}")
        additions = deletions = files = 0
        for line in result.stdout.splitlines():
            added, deleted, _path = line.split("\t", 2)
            files += 1
            additions += int(added) if added.isdigit() else 0
            deletions += int(deleted) if deleted.isdigit() else 0
        return additions, deletions, files

    def commit_info(self, sha: str) -> CommitInfo:
        """Read one commit's metadata."""
        fields = "%x00".join(["%H", "%T", "%P", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B"])
        result = self._git("show", "-s", f"--format={fields}", sha)
        parts = result.stdout.split(_SEP)
        return CommitInfo(
            sha=parts[0],
            tree=parts[1],
            parents=tuple(parts[2].split()),
            author_name=parts[3],
            author_email=parts[4],
            author_date=parts[5],
            committer_name=parts[6],
            committer_email=parts[7],
            committer_date=parts[8],
            message=parts[9].rstrip("\n"),
        )
