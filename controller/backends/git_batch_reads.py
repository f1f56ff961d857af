"""Many files of a remote branch in one git call: only their blob ids.

A reconcile pass over 1,000 pins cannot afford to read every file each time: ``ls-tree``
lists their blob ids from the tree alone (a few ms where reading them takes 100+), so
unchanged files need not be read at all (the contents themselves are read through one
long-lived ``cat-file --batch``: :mod:`~controller.backends.git_object_reader`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["blob_ids"]

#: Paths per ``git ls-tree`` call (its command line stays far below the kernel's limit).
_LS_TREE_PATHS = 2000


def blob_ids(git_dir: Path, branch: str, paths: list[str]) -> dict[str, str | None]:
    """Each file's blob id on the remote ``branch`` from ``git ls-tree`` (None: absent; all
    None when there is no such branch)."""
    found: dict[str, str | None] = dict.fromkeys(paths)
    for start in range(0, len(paths), _LS_TREE_PATHS):
        chunk = paths[start : start + _LS_TREE_PATHS]
        done = subprocess.run(
            ["git", f"--git-dir={git_dir}", "ls-tree", "-z", "--full-tree",
             f"refs/remotes/origin/{branch}", "--", *chunk],
            capture_output=True, check=False, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            return dict.fromkeys(paths)  # no such branch
        for entry in done.stdout.split(b"\0"):
            info, tab, name = entry.partition(b"\t")
            fields = info.split()
            path = name.decode("utf-8")
            if tab and len(fields) == 3 and fields[1] == b"blob" and path in found:
                found[path] = fields[2].decode("ascii")
    return found
