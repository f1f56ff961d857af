"""Commits written with Git's plumbing: an edit of the work tree, or an empty parentless one.

No branch is checked out and no porcelain runs: the work tree is reset to the start commit in
place (only files that differ are rewritten), the edit runs on it, and the commit is built from
the index's tree with ``commit-tree``, its message cleaned up as ``git commit -m`` would. The
caller pushes the commit by its sha.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from git import Repo

__all__ = ["commit_edit", "commit_message", "empty_tree_commit"]


def commit_message(message: str) -> str:
    """``message`` as ``git commit -m`` records it (its ``whitespace`` cleanup): trailing
    whitespace, leading and trailing blank lines and repeated blank lines removed."""
    lines: list[str] = []
    for line in message.split("\n"):
        line = line.rstrip(" \t\r")
        if line or (lines and lines[-1]):
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "".join(f"{line}\n" for line in lines)


def commit_edit(
    repo: Repo, work_tree: Path, start: str, edit: Callable[[Path], None], message: str
) -> str | None:
    """``edit`` applied to ``start``'s tree in ``work_tree`` and committed on top of ``start``:
    the new commit's sha, or None when the edit changed nothing (no commit is made)."""
    repo.git.reset("--hard", "--quiet", start)
    repo.git.clean("-fdxq")
    edit(work_tree)
    repo.git.add("--all")
    tree = str(repo.git.write_tree())
    if tree == str(repo.commit(start).tree.hexsha):
        return None
    made = subprocess.run(
        ["git", f"--git-dir={repo.git_dir}", "commit-tree", tree, "-p", start],
        input=commit_message(message).encode("utf-8"),
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    return made.stdout.decode("ascii").strip()


def empty_tree_commit(repo: Repo, message: str) -> str:
    """A parentless commit with an empty tree and ``message`` (a lease's record)."""
    with Path(os.devnull).open("rb") as empty:
        tree = str(repo.git.hash_object("-t", "tree", "-w", "--stdin", istream=empty))
    return str(repo.git.commit_tree(tree, "-m", message))
