"""The fake cluster reads its branch's tip as git stores it, loose or packed, with no process."""

from __future__ import annotations

from pathlib import Path

from support.gitrepo import GitRemote, git

from controller.testing import InstantCluster


def test_tip_is_read_from_loose_and_packed_refs(git_remote: GitRemote, tmp_path: Path) -> None:
    """Each answer is what ``git rev-parse`` says: a loose ref, a packed one, a pushed one on
    top of a packed one, none for a deleted or absent branch."""
    cluster = InstantCluster(git_remote.path)
    assert cluster._tip() == git_remote.head()
    git("pack-refs", "--all", "--prune", cwd=git_remote.path)
    assert not (git_remote.path / "refs/heads/main").exists()
    assert cluster._tip() == git_remote.initial_commit
    clone = git_remote.clone(tmp_path / "clone")
    (clone / "new.txt").write_text("new\n")
    git("add", "new.txt", cwd=clone)
    git("commit", "--quiet", "-m", "new", cwd=clone)
    git("push", "--quiet", "origin", "main", cwd=clone)
    assert cluster._tip() == git_remote.head() != git_remote.initial_commit
    git("update-ref", "-d", "refs/heads/main", cwd=git_remote.path)
    assert cluster._tip() is None
    assert InstantCluster(git_remote.path, branch="absent")._tip() is None
