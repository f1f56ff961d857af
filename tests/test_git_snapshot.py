"""What a workspace read once per sync is read again exactly when the clone's refs may move.

:class:`~controller.backends.git_repo.GitWorkspace` answers refs from one ``for-each-ref`` per
sync, fetch or push and files through one long-lived ``cat-file --batch``, kept by commit.
These tests hold it to "as of the last sync": another clone's push is invisible until the
next sync and visible after it; our own push is visible at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.gitrepo import README, GitRemote, git

from controller.backends.git_object_reader import ObjectReader
from controller.backends.git_repo import GitWorkspace
from controller.backends.git_snapshot import SyncedReads


def push_from(clone: Path, files: dict[str, str | None], branch: str = "main") -> str:
    """Another writer: change ``files`` (None deletes) in ``clone`` and push to ``branch``."""
    git("pull", "--quiet", "--ff-only", cwd=clone)
    for name, text in files.items():
        if text is None:
            git("rm", "--quiet", name, cwd=clone)
        else:
            (clone / name).write_text(text)
            git("add", name, cwd=clone)
    git("commit", "--quiet", "-m", "another writer", cwd=clone)
    git("push", "--quiet", "origin", f"HEAD:{branch}", cwd=clone)
    return git("rev-parse", "HEAD", cwd=clone)


@pytest.fixture
def processes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every process started from now on, by program and first argument (``git show``)."""
    started: Counter[str] = Counter()
    execute = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def counting(self: Any, args: Any, *rest: Any, **kwargs: Any) -> Any:
        words = [str(a) for a in args if not str(a).startswith("--git-dir")]
        started[" ".join(Path(words[0]).name.split() + words[1:2])] += 1
        return execute(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "_execute_child", counting)
    return started


def test_another_clones_push_is_seen_after_the_next_sync(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    """Reads answer as of the last sync: another writer's push (a changed file, a new one, a
    new branch) shows in no read until this workspace syncs, then in every one."""
    workspace = GitWorkspace(git_remote.url, tmp_path / "cache")
    first = workspace.remote_sha("main")
    assert workspace.read("main", "README.md") == README.removesuffix("\n")
    assert workspace.read("main", "./README.md") == README.removesuffix("\n")
    assert workspace.last_change("main", "README.md") is not None
    other = git_remote.clone(tmp_path / "other")
    pushed = push_from(other, {"README.md": "# changed\n", "new.txt": "new\n"})
    git("push", "--quiet", "origin", "HEAD:topic", cwd=other)

    assert workspace.remote_sha("main") == first
    assert workspace.read("main", "README.md") == README.removesuffix("\n")
    assert workspace.read_many("main", ["new.txt"]) == {"new.txt": None}
    assert workspace.remote_sha("topic") is None

    workspace.sync()
    assert workspace.remote_sha("main") == pushed
    assert workspace.remote_sha("topic") == pushed
    assert workspace.read("main", "README.md") == "# changed"
    assert workspace.read_many("main", ["new.txt", "README.md"]) == {
        "new.txt": "new\n",
        "README.md": "# changed\n",
    }
    change = workspace.last_change("main", "README.md")
    assert change is not None
    assert change.sha == pushed


def test_a_branch_deleted_on_the_remote_is_gone_after_a_sync(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    """A branch pruned by the fetch has no tip, files or history any more."""
    workspace = GitWorkspace(git_remote.url, tmp_path / "cache")
    workspace.commit_and_push(
        branch="topic", base="main", edit=lambda tree: (tree / "t.txt").write_text("t"), message="t"
    )
    assert workspace.read("topic", "t.txt") == "t"
    git("update-ref", "-d", "refs/heads/topic", cwd=git_remote.path)
    workspace.sync()
    assert workspace.remote_sha("topic") is None
    assert workspace.read("topic", "t.txt") is None
    assert workspace.read_many("topic", ["t.txt"]) == {"t.txt": None}
    assert workspace.last_change("topic", "t.txt") is None
    assert workspace.changes("topic", "t.txt") == []


def test_a_read_after_our_own_push_sees_our_commit(git_remote: GitRemote, tmp_path: Path) -> None:
    """A push moves the remote-tracking branch: the next reads, with no sync, see the commit."""
    workspace = GitWorkspace(git_remote.url, tmp_path / "cache")
    assert workspace.read("main", "pin.yaml") is None
    outcome = workspace.commit_and_push(
        branch="main",
        base="main",
        edit=lambda tree: (tree / "pin.yaml").write_text("version: 2\n"),
        message="pin v2\n\nSluice-Action: step",
    )
    assert workspace.remote_sha("main") == outcome.sha == git_remote.head()
    assert workspace.read("main", "pin.yaml") == "version: 2"
    change = workspace.last_change("main", "pin.yaml")
    assert change is not None
    assert (change.sha, change.trailers) == (outcome.sha, {"Sluice-Action": "step"})
    merged = workspace.commit_and_push(
        branch="topic",
        base="main",
        edit=lambda tree: (tree / "pin.yaml").write_text("version: 3\n"),
        message="pin v3",
    )
    merge = workspace.merge(branch="topic", base="main", message="Merge topic")
    assert workspace.remote_sha("topic") == merged.sha
    assert workspace.remote_sha("main") == merge
    assert workspace.read("main", "pin.yaml") == "version: 3"


def test_reads_between_syncs_start_no_git_process(
    git_remote: GitRemote, tmp_path: Path, processes: Counter[str]
) -> None:
    """Ten passes' worth of reads after one sync: one for-each-ref and one cat-file process,
    one git log per path; the next sync reads the refs once more."""
    workspace = GitWorkspace(git_remote.url, tmp_path / "cache")
    workspace.sync()
    head = git_remote.head()
    processes.clear()
    for _ in range(10):
        assert workspace.default_branch() == "main"
        assert workspace.remote_sha("main") == head
        assert workspace.read("main", "README.md") is not None
        assert workspace.read_many("main", ["README.md", "absent.txt"])["absent.txt"] is None
        assert workspace.last_change("main", "README.md") is not None
    assert processes == Counter({"git for-each-ref": 1, "git cat-file": 1, "git log": 1})
    workspace.sync()
    workspace.remote_sha("main")
    workspace.read("main", "README.md")
    assert processes == Counter(
        {"git for-each-ref": 2, "git cat-file": 1, "git log": 1, "git fetch": 1}
    )


def test_default_branch_without_origin_head_is_main(git_remote: GitRemote, tmp_path: Path) -> None:
    """No ``origin/HEAD`` (or one naming a deleted branch): ``main``, or the name it keeps."""
    workspace = GitWorkspace(git_remote.url, tmp_path / "cache")
    workspace.sync()
    git("symbolic-ref", "-d", "refs/remotes/origin/HEAD", cwd=workspace.path)
    workspace.sync()
    assert workspace.default_branch() == "main"
    git("symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/trunk", cwd=workspace.path)
    workspace.sync()
    assert workspace.default_branch() == "trunk"


def test_object_reader_outlives_its_git_process(git_remote: GitRemote, tmp_path: Path) -> None:
    """A killed ``cat-file`` is replaced at the next read; a missing object is None."""
    clone = git_remote.clone(tmp_path / "clone")
    reader = ObjectReader(clone / ".git")
    head = git("rev-parse", "HEAD", cwd=clone)
    assert reader.read([f"{head}:README.md", f"{head}:absent"]) == [
        ("blob", README.encode()),
        None,
    ]
    process = reader._process
    assert process is not None
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert reader.read([f"{head}:README.md"]) == [("blob", README.encode())]
    with pytest.raises(ValueError, match="line feed"):
        reader.read(["a\nb"])
    reader.close()
    assert process.poll() is not None


def test_files_kept_are_bounded(git_remote: GitRemote, tmp_path: Path) -> None:
    """The least recently used go first; what went is read again when asked for."""
    clone = git_remote.clone(tmp_path / "clone")
    head = git("rev-parse", "HEAD", cwd=clone)
    synced = SyncedReads(clone / ".git", kept=2)
    assert synced.objects(head, ["README.md", "a", "b"]) == [("blob", README.encode()), None, None]
    assert list(synced._objects) == [(head, "a"), (head, "b")]
    assert synced.objects(head, ["README.md"]) == [("blob", README.encode())]
    assert list(synced._objects) == [(head, "b"), (head, "README.md")]
    synced.close()


def test_a_clone_git_cannot_read_answers_none_and_asks_again(tmp_path: Path) -> None:
    """Where git fails (no repository at all), every branch is absent, as each failed
    ``rev-parse`` and ``git show`` said before; nothing of it is kept."""
    synced = SyncedReads(tmp_path / "nothing" / ".git")
    assert synced.refs().tips == {}
    assert synced._refs is None
    assert synced.objects("0" * 40, ["a.txt"]) == [None]
    assert not synced._objects
    synced.close()
