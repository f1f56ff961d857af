"""Git write-back: commits recomputed from the remote's tip, lost races retried, never forced."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from support.gitrepo import GitRemote, git

from controller.backends.git_repo import GitWorkspace, Identity
from controller.errors import GitConflict, RemoteUnavailable


def write(name: str, text: str):
    def edit(tree: Path) -> None:
        (tree / name).write_text(text)

    return edit


def test_edit_that_changes_nothing_makes_no_commit(git_remote: GitRemote, tmp_path: Path) -> None:
    """Writing a file with the content it already has is skipped, not committed."""
    workspace = GitWorkspace(git_remote.url, tmp_path / "cache")
    first = workspace.commit_and_push(
        branch="main", base="main", edit=write("a.txt", "1\n"), message="a"
    )
    again = workspace.commit_and_push(
        branch="main", base="main", edit=write("a.txt", "1\n"), message="a"
    )
    assert first.committed
    assert not again.committed
    assert git_remote.head() == first.sha == again.sha


def test_new_branch_starts_from_base(git_remote: GitRemote, tmp_path: Path) -> None:
    """A missing branch is created from the base branch's tip."""
    workspace = GitWorkspace(git_remote.url, tmp_path / "cache")
    outcome = workspace.commit_and_push(
        branch="topic", base="main", edit=write("b.txt", "b\n"), message="b"
    )
    assert git("rev-parse", "topic~1", cwd=git_remote.path) == git_remote.initial_commit
    assert git_remote.head("topic") == outcome.sha


def test_concurrent_writers_both_land(git_remote: GitRemote, tmp_path: Path) -> None:
    """Two writers racing on one branch both land: the loser fetches, re-applies and pushes."""
    barrier = threading.Barrier(2, timeout=30)

    def racing(name: str):
        calls = []

        def edit(tree: Path) -> None:
            (tree / name).write_text(name)
            calls.append(tree)
            if len(calls) == 1:  # both edit the same start commit before either pushes
                barrier.wait()

        return edit

    outcomes = {}

    def run(name: str) -> None:
        workspace = GitWorkspace(git_remote.url, tmp_path / f"cache-{name}", backoff_seconds=0.01)
        outcomes[name] = workspace.commit_and_push(
            branch="main", base="main", edit=racing(name), message=f"add {name}"
        )

    threads = [threading.Thread(target=run, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(o.attempts for o in outcomes.values()) == [1, 2]
    files = git("ls-tree", "--name-only", "main", cwd=git_remote.path).split()
    assert {"left", "right"} <= set(files)
    log = git("log", "--format=%s", "main", cwd=git_remote.path).splitlines()
    assert sorted(log[:2]) == ["add left", "add right"]


def test_gives_up_after_bounded_attempts(git_remote: GitRemote, tmp_path: Path) -> None:
    """A remote that moves before every push ends in GitConflict, not an endless loop."""
    other = git_remote.clone(tmp_path / "other")
    counter = iter(range(100))

    def edit_and_race(tree: Path) -> None:
        (tree / "mine.txt").write_text("mine")
        # Someone else pushes to main between our fetch and our push, every time.
        (other / "theirs.txt").write_text(str(next(counter)))
        git("add", "theirs.txt", cwd=other)
        git("commit", "--quiet", "-m", "theirs", cwd=other)
        git("push", "--quiet", "origin", "main", cwd=other)

    workspace = GitWorkspace(
        git_remote.url, tmp_path / "cache", max_attempts=3, backoff_seconds=0.0
    )
    with pytest.raises(GitConflict, match="lost the race 3 times"):
        workspace.commit_and_push(branch="main", base="main", edit=edit_and_race, message="mine")
    assert "mine.txt" not in git("ls-tree", "--name-only", "main", cwd=git_remote.path)


def test_lost_races_back_off_exponentially_with_jitter(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    """Each lost race waits backoff * 2**(n - 1) times a jitter in [0.5, 1.5) through the
    injected sleep before trying again; giving up after the last attempt waits no more."""
    other = git_remote.clone(tmp_path / "other")
    counter = iter(range(100))

    def edit_and_race(tree: Path) -> None:
        (tree / "mine.txt").write_text("mine")
        (other / "theirs.txt").write_text(str(next(counter)))
        git("add", "theirs.txt", cwd=other)
        git("commit", "--quiet", "-m", "theirs", cwd=other)
        git("push", "--quiet", "origin", "main", cwd=other)

    slept: list[float] = []
    workspace = GitWorkspace(
        git_remote.url, tmp_path / "cache", max_attempts=4, backoff_seconds=0.1, sleep=slept.append
    )
    with pytest.raises(GitConflict, match="lost the race 4 times"):
        workspace.commit_and_push(branch="main", base="main", edit=edit_and_race, message="mine")
    assert len(slept) == 3
    for n, delay in enumerate(slept, start=1):
        assert 0.05 * 2 ** (n - 1) <= delay < 0.15 * 2 ** (n - 1)


def test_unreachable_remote_is_a_transient_error(tmp_path: Path) -> None:
    """A remote that does not exist is reported as unreachable, naming it."""
    workspace = GitWorkspace(str(tmp_path / "missing.git"), tmp_path / "cache")
    with pytest.raises(RemoteUnavailable, match=r"missing\.git"):
        workspace.sync()


def test_credentials_in_remote_url_never_reach_errors(tmp_path: Path) -> None:
    """A token in an HTTPS remote URL is masked in the error."""
    workspace = GitWorkspace(
        "https://x-access-token:ghs_SECRET123@127.0.0.1:1/o/r.git", tmp_path / "c"
    )
    with pytest.raises(RemoteUnavailable) as caught:
        workspace.sync()
    assert "ghs_SECRET123" not in str(caught.value)


def test_commits_are_built_as_git_commit_makes_them(git_remote: GitRemote, tmp_path: Path) -> None:
    """The commit (built with write-tree and commit-tree, no checkout) has the identity as
    author and committer, the start as its only parent and the message as ``git commit -m``
    records it; what a failed edit left in the work tree never reaches a later commit."""
    workspace = GitWorkspace(
        git_remote.url, tmp_path / "cache", identity=Identity("Sluice Bot", "bot@example.com")
    )

    def broken(tree: Path) -> None:
        (tree / "README.md").write_text("half-written\n")
        (tree / "stray.txt").write_text("stray\n")
        raise GitConflict("the edit refused the tip")

    with pytest.raises(GitConflict):
        workspace.commit_and_push(branch="main", base="main", edit=broken, message="x")
    message = "\n\nfraud v3 → staging  \n\n\n\nWhy.\t\n\nSluice-Action: step\n\n"
    outcome = workspace.commit_and_push(
        branch="topic", base="main", edit=write("a.txt", "1\n"), message=message
    )
    shown = git("show", "-s", "--format=%an <%ae>|%cn <%ce>|%P", outcome.sha, cwd=git_remote.path)
    assert (
        shown
        == f"Sluice Bot <bot@example.com>|Sluice Bot <bot@example.com>|{git_remote.initial_commit}"
    )
    body = git("cat-file", "commit", outcome.sha, cwd=git_remote.path).split("\n\n", 1)[1]
    assert body == "fraud v3 → staging\n\nWhy.\n\nSluice-Action: step"  # the helper strips
    files = git("ls-tree", "-r", "--name-only", outcome.sha, cwd=git_remote.path).splitlines()
    assert "stray.txt" not in files
    assert git("show", f"{outcome.sha}:README.md", cwd=git_remote.path) != "half-written"
