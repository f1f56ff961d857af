"""One contract, two implementations: GitWorkspace on a bare remote on disk and the in-memory
MemoryReleaseRepository pass the same behavioural tests, so a service test that uses the fake
learns what the real one would do (httpx's MockTransport, Kargo's gitprovider fakes)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.release_repositories import README, GitHarness, Harness, MemoryHarness

from controller.errors import GitConflict, PermanentError, RemoteUnavailable
from controller.ports import CommitOutcome, ReleaseRepository
from controller.testing import MemoryReleaseRepository

TRAILERS = "Sluice-Action: step\nSluice-Version: 3"


@pytest.fixture(params=["git", "memory"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    """A remote with README.md on main, played by real git or in memory."""
    if request.param == "git":
        return GitHarness(tmp_path)
    return MemoryHarness()


def write(name: str, text: str) -> Callable[[Path], None]:
    def edit(tree: Path) -> None:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)

    return edit


# -- reading ----------------------------------------------------------------------------------


def test_the_first_read_fetches(harness: Harness) -> None:
    """A workspace that never synced reads the remote as it is (a first clone); ``read``
    drops a file's last newline (GitPython's output), ``read_many`` keeps it."""
    repo = harness.workspace()
    assert repo.read("main", "README.md") == README.removesuffix("\n")
    assert repo.read_many("main", ["README.md"]) == {"README.md": README}
    assert repo.remote_sha("main") == harness.tip("main")
    assert repo.default_branch() == "main"


def test_reads_answer_as_of_the_last_sync(harness: Harness) -> None:
    """Another writer's commit is invisible until the next sync, then seen whole."""
    repo = harness.workspace()
    repo.sync()
    before = repo.remote_sha("main")
    sha = harness.push("main", {"a.txt": "a\n"}, "add a")
    assert repo.read("main", "a.txt") is None
    assert repo.remote_sha("main") == before
    repo.sync()
    assert repo.read("main", "a.txt") == "a"
    assert repo.remote_sha("main") == sha


def test_read_many_answers_every_path(harness: Harness) -> None:
    """Each path asked for has its text, or None when absent (on a missing branch too)."""
    harness.push("main", {"d/x.yaml": "x: 1\n", "d/y.yaml": "y: 2\n"}, "add d")
    repo = harness.workspace()
    assert repo.read_many("main", ["d/y.yaml", "nope", "d/x.yaml"]) == {
        "d/y.yaml": "y: 2\n",
        "nope": None,
        "d/x.yaml": "x: 1\n",
    }
    assert repo.read_many("main", []) == {}
    assert repo.read_many("gone", ["d/x.yaml"]) == {"d/x.yaml": None}
    assert repo.read("gone", "README.md") is None
    assert repo.remote_sha("gone") is None


def test_blob_ids_are_gits_object_ids_listed_without_reading(harness: Harness) -> None:
    """Each file's id is ``git hash-object``'s (equal contents, equal ids), a directory or an
    absent path has none, and the ids are as of the last sync, as every read is."""
    harness.push("main", {"d/x.yaml": "x: 1\n", "d/y.yaml": "x: 1\n", "z": "é\n"}, "add d")
    repo = harness.workspace()
    assert repo.blob_ids("main", ["d/x.yaml", "z", "d", "nope"]) == {
        "d/x.yaml": git_blob_id("x: 1\n"),
        "z": git_blob_id("é\n"),
        "d": None,
        "nope": None,
    }
    assert repo.blob_ids("main", ["d/y.yaml"]) == {"d/y.yaml": git_blob_id("x: 1\n")}
    assert repo.blob_ids("main", []) == {}
    assert repo.blob_ids("gone", ["d/x.yaml"]) == {"d/x.yaml": None}
    harness.push("main", {"d/x.yaml": "x: 2\n"}, "change x")
    assert repo.blob_ids("main", ["d/x.yaml"]) == {"d/x.yaml": git_blob_id("x: 1\n")}
    repo.sync()
    assert repo.blob_ids("main", ["d/x.yaml"]) == {"d/x.yaml": git_blob_id("x: 2\n")}


def git_blob_id(text: str) -> str:
    """What ``git hash-object --stdin`` prints for ``text``."""
    done = subprocess.run(
        ["git", "hash-object", "--stdin"], input=text.encode(), capture_output=True, check=True
    )
    return done.stdout.decode().strip()


def test_list_dir_names_what_is_directly_under_a_directory(harness: Harness) -> None:
    """Files and subdirectories one level down, in Git's order; empty for no such directory."""
    changes: dict[str, str | None] = {
        "m/o/staging/sluice.yaml": "a\n",
        "m/o/production/sluice.yaml": "b\n",
        "m/o/notes.md": "c\n",
        "m/o.txt": "d\n",
    }
    harness.push("main", changes, "add overlays")
    repo = harness.workspace()
    assert repo.list_dir("main", "m/o") == ["notes.md", "production", "staging"]
    assert repo.list_dir("main", "m") == ["o.txt", "o"]
    assert repo.list_dir("main", "absent") == []
    assert repo.list_dir("gone", "m") == []


def test_last_change_is_the_commit_that_changed_the_path(harness: Harness) -> None:
    """sha, whole-second time and trailers of the last commit touching the path; a later commit
    elsewhere does not count, and a path never touched has none."""
    repo = harness.workspace()
    outcome = repo.commit_and_push(
        branch="main",
        base="main",
        edit=write("pin.yaml", "v: 1\n"),
        message=f"fraud v3 → staging\n\nWhy it moved.\n\n{TRAILERS}",
    )
    harness.push("main", {"other.txt": "o\n"}, "unrelated")
    repo.sync()
    change = repo.last_change("main", "pin.yaml")
    assert change is not None
    assert change.sha == outcome.sha
    assert change.trailers == {"Sluice-Action": "step", "Sluice-Version": "3"}
    assert change.time == int(change.time)
    assert abs(change.time - time.time()) < 60
    assert repo.last_change("main", "never.txt") is None
    plain = repo.last_change("main", "other.txt")
    assert plain is not None
    assert plain.trailers == {}


def test_a_merged_branch_changed_the_path_with_its_merge_commit(harness: Harness) -> None:
    """History is first-parent: on the base, the merge commit changed what the branch changed."""
    harness.push("proposal", {"pin.yaml": "v: 2\n"}, "propose v2\n\nSluice-Version: 2")
    merge = harness.merge("proposal", "main", "Merge proposal")
    repo = harness.workspace()
    change = repo.last_change("main", "pin.yaml")
    assert change is not None
    assert change.sha == merge
    assert change.trailers == {}
    assert [c.sha for c in repo.changes("main", "pin.yaml")] == [merge]


def test_changes_are_newest_first_and_bounded(harness: Harness) -> None:
    """Every commit that changed the path, newest first, at most ``limit``."""
    shas = [harness.push("main", {"p": f"{n}\n"}, f"p {n}") for n in range(3)]
    harness.push("main", {"q": "q\n"}, "q")
    repo = harness.workspace()
    assert [c.sha for c in repo.changes("main", "p")] == shas[::-1]
    assert [c.sha for c in repo.changes("main", "p", limit=2)] == shas[:0:-1]


def test_message_is_the_whole_message(harness: Harness) -> None:
    """The subject, body and trailers of a known commit; None for a commit not known."""
    body = f"fraud v3 → staging\n\nWhy it moved.\n\n{TRAILERS}"
    sha = harness.push("main", {"p": "1\n"}, body)
    repo = harness.workspace()
    assert repo.message(sha) == body + "\n"
    assert repo.message("0" * 40) is None


def test_log_subjects_between_two_commits(harness: Harness) -> None:
    """Short sha and subject of each commit after ``since`` up to ``until`` that changed the
    path, oldest first; ``since`` None is ``until``'s own; an unknown commit gives nothing."""
    first = harness.push("main", {"p": "1\n"}, "p one")
    harness.push("main", {"q": "1\n"}, "q only")
    second = harness.push("main", {"p": "2\n"}, "p two\n\nbody")
    third = harness.push("main", {"p": "3\n"}, "p three")
    repo = harness.workspace()
    subjects = repo.log_subjects("main", first, third, "p")
    assert [s.split(" ", 1)[1] for s in subjects] == ["p two", "p three"]
    assert subjects[0].split(" ", 1)[0] == second[: len(subjects[0].split(" ", 1)[0])]
    assert [s.split(" ", 1)[1] for s in repo.log_subjects("main", None, third, "p")] == ["p three"]
    assert repo.log_subjects("main", "f" * 40, third, "p") == []


def test_diff_of_a_path_between_two_commits(harness: Harness) -> None:
    """Git's unified diff of one path; empty when it did not change."""
    old = harness.push("main", {"pin.yaml": "a: 1\nb: 2\nc: 3\n", "x": "1\n"}, "one")
    new = harness.push("main", {"pin.yaml": "a: 1\nb: 20\nc: 3\n", "x": "2\n"}, "two")
    repo = harness.workspace()
    diff = repo.diff(old, new, "pin.yaml").splitlines()
    assert diff[0] == "diff --git a/pin.yaml b/pin.yaml"
    assert "--- a/pin.yaml" in diff
    assert "+++ b/pin.yaml" in diff
    assert [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        "-b: 2",
        "+b: 20",
    ]
    assert repo.diff(old, old, "pin.yaml") == ""


# -- writing ----------------------------------------------------------------------------------


def test_commit_and_push_lands_on_the_remote(harness: Harness) -> None:
    """An edit is committed and pushed in one attempt; the workspace sees its push at once."""
    repo = harness.workspace()
    outcome = repo.commit_and_push(
        branch="main", base="main", edit=write("a.txt", "1\n"), message="a"
    )
    assert outcome.committed
    assert outcome.attempts == 1
    assert harness.tip("main") == outcome.sha == repo.remote_sha("main")
    assert harness.files("main") == {"README.md": README, "a.txt": "1\n"}
    assert repo.read_many("main", ["a.txt"]) == {"a.txt": "1\n"}
    assert repo.message(outcome.sha) == "a\n"


def test_an_edit_that_changes_nothing_makes_no_commit(harness: Harness) -> None:
    """Writing what is already there commits nothing and answers the tip it started from."""
    repo = harness.workspace()
    first = repo.commit_and_push(branch="main", base="main", edit=write("a", "1\n"), message="a")
    again = repo.commit_and_push(branch="main", base="main", edit=write("a", "1\n"), message="a")
    assert not again.committed
    assert again.sha == first.sha == harness.tip("main")


def test_a_new_branch_starts_from_the_base(harness: Harness) -> None:
    """A branch the remote does not have is made from the base's tip; the base is untouched."""
    repo = harness.workspace()
    main = harness.tip("main")
    outcome = repo.commit_and_push(
        branch="topic", base="main", edit=write("b.txt", "b\n"), message="b"
    )
    assert harness.tip("topic") == outcome.sha
    assert harness.tip("main") == main
    assert harness.files("topic") == {"README.md": README, "b.txt": "b\n"}
    assert repo.log_subjects("topic", main, outcome.sha, "b.txt") == [f"{outcome.sha[:7]} b"]


def _merged_then_undone(harness: Harness) -> tuple[ReleaseRepository, CommitOutcome]:
    """A proposal of v3, merged into main, then undone there by a rollback commit."""
    repo = harness.workspace()
    proposed = repo.commit_and_push(
        branch="proposal", base="main", edit=write("pin.yaml", "v: 3\n"), message="propose v3"
    )
    harness.merge("proposal", "main", "Merge proposal")
    harness.push("main", {"pin.yaml": "v: 1\n"}, "rollback v3: aborted, v1 serves again")
    repo.sync()
    return repo, proposed


def test_a_branch_already_merged_into_the_base_starts_again_from_the_base_when_asked(
    harness: Harness,
) -> None:
    """A proposal branch whose work the base already holds (merged, then rolled back on the
    base) is done: proposed again with ``restart_merged``, it is remade from the base's tip,
    so the edit lands as a new commit to merge, not as "unchanged" on the old tip; the
    preview shows that change too."""
    repo, proposed = _merged_then_undone(harness)
    preview = repo.preview(
        branch="proposal", base="main", edit=write("pin.yaml", "v: 3\n"), path="pin.yaml",
        restart_merged=True,
    )  # fmt: skip
    assert "-v: 1" in preview
    assert "+v: 3" in preview
    again = repo.commit_and_push(
        branch="proposal", base="main", edit=write("pin.yaml", "v: 3\n"), message="propose v3",
        restart_merged=True,
    )  # fmt: skip
    assert again.committed
    assert again.sha != proposed.sha
    assert harness.tip("proposal") == again.sha
    assert harness.files("proposal")["pin.yaml"] == "v: 3\n"
    main = harness.tip("main")
    assert main is not None
    assert repo.log_subjects("proposal", main, again.sha, "pin.yaml") == [
        f"{again.sha[:7]} propose v3"
    ]


def test_by_default_a_merged_branch_is_left_as_it_is(harness: Harness) -> None:
    """Without ``restart_merged`` the edit runs on the branch's own tip, where it changes
    nothing: an alias that still names a rolled-back version is not proposed again by every
    pass of `sluice serve`."""
    repo, proposed = _merged_then_undone(harness)
    again = repo.commit_and_push(
        branch="proposal", base="main", edit=write("pin.yaml", "v: 3\n"), message="propose v3"
    )
    assert not again.committed
    assert again.sha == proposed.sha == harness.tip("proposal")


def test_an_unmerged_branch_keeps_its_commits(harness: Harness) -> None:
    """A branch with work the base does not hold yet is edited on its own tip."""
    repo = harness.workspace()
    first = repo.commit_and_push(
        branch="proposal", base="main", edit=write("a.txt", "a\n"), message="a"
    )
    second = repo.commit_and_push(
        branch="proposal", base="main", edit=write("b.txt", "b\n"), message="b"
    )
    assert second.committed
    assert harness.files("proposal") == {"README.md": README, "a.txt": "a\n", "b.txt": "b\n"}
    assert first.sha != second.sha


def test_a_missing_base_is_permanent(harness: Harness) -> None:
    """Neither the branch nor its base on the remote: a PermanentError naming the base."""
    repo = harness.workspace()
    with pytest.raises(PermanentError, match="'nowhere' does not exist"):
        repo.commit_and_push(branch="x", base="nowhere", edit=write("a", "1"), message="a")
    with pytest.raises(PermanentError, match="'nowhere' does not exist"):
        repo.preview(branch="x", base="nowhere", edit=write("a", "1"), path="a")


def test_a_lost_race_is_recomputed_from_the_new_tip(harness: Harness) -> None:
    """Another writer pushes between the fetch and the push: the edit runs again on their
    commit and both changes land, in two attempts."""
    repo = harness.workspace()
    trees: list[set[str]] = []

    def edit(tree: Path) -> None:
        trees.append({p.name for p in tree.iterdir()})
        (tree / "mine.txt").write_text("mine\n")
        if len(trees) == 1:
            harness.push("main", {"theirs.txt": "theirs\n"}, "theirs")

    outcome = repo.commit_and_push(branch="main", base="main", edit=edit, message="mine")
    assert outcome.attempts == 2
    assert "theirs.txt" in trees[1]
    assert harness.files("main") == {
        "README.md": README,
        "mine.txt": "mine\n",
        "theirs.txt": "theirs\n",
    }


def test_losing_every_race_is_a_conflict(harness: Harness) -> None:
    """A remote that moves before every push ends in GitConflict after max_attempts (3 here)
    and never in a force-push: their commits stay, mine is not there."""
    repo = harness.workspace()
    count = iter(range(100))

    def edit(tree: Path) -> None:
        (tree / "mine.txt").write_text("mine\n")
        harness.push("main", {"theirs.txt": f"{next(count)}\n"}, "theirs")

    with pytest.raises(GitConflict, match="lost the race 3 times"):
        repo.commit_and_push(branch="main", base="main", edit=edit, message="mine")
    assert harness.files("main")["theirs.txt"] == "2\n"
    assert "mine.txt" not in harness.files("main")


def test_an_edit_may_refuse_the_tip_it_finds(harness: Harness) -> None:
    """An edit that raises on the new tip (a compare-and-swap) ends the write, nothing pushed."""
    repo = harness.workspace()
    repo.sync()

    def edit(tree: Path) -> None:
        if (tree / "theirs.txt").exists():
            raise GitConflict("the pin moved")
        (tree / "mine.txt").write_text("mine\n")
        harness.push("main", {"theirs.txt": "theirs\n"}, "theirs")

    with pytest.raises(GitConflict, match="the pin moved"):
        repo.commit_and_push(branch="main", base="main", edit=edit, message="mine")
    assert "mine.txt" not in harness.files("main")


def test_preview_shows_the_diff_and_pushes_nothing(harness: Harness) -> None:
    """What the commit would change in the path, and the remote unchanged."""
    harness.push("main", {"pin.yaml": "v: 1\n"}, "pin")
    repo = harness.workspace()
    tip = harness.tip("main")
    diff = repo.preview(branch="p", base="main", edit=write("pin.yaml", "v: 2\n"), path="pin.yaml")
    assert "-v: 1" in diff.splitlines()
    assert "+v: 2" in diff.splitlines()
    assert harness.tip("main") == tip
    assert harness.tip("p") is None


def test_two_workspaces_racing_both_land(harness: Harness) -> None:
    """Two controllers editing the same tip at once: one push wins, the other retries, both
    changes land."""
    barrier = threading.Barrier(2, timeout=30)
    outcomes = {}

    def run(name: str) -> None:
        repo = harness.workspace(name)
        calls: list[int] = []

        def edit(tree: Path) -> None:
            (tree / name).write_text(f"{name}\n")
            calls.append(1)
            if len(calls) == 1:
                barrier.wait()

        outcomes[name] = repo.commit_and_push(
            branch="main", base="main", edit=edit, message=f"add {name}"
        )

    threads = [threading.Thread(target=run, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(o.attempts for o in outcomes.values()) == [1, 2]
    assert {"left", "right"} <= set(harness.files("main"))


def test_locked_is_reentrant(harness: Harness) -> None:
    """A caller holding the workspace can call what holds it again."""
    repo = harness.workspace()
    with repo.locked(), repo.locked():
        outcome = repo.commit_and_push(
            branch="main", base="main", edit=write("a", "1\n"), message="a"
        )
    assert outcome.committed


# -- faults -----------------------------------------------------------------------------------


def test_an_unreachable_remote_is_transient_and_reads_keep_the_last_sync(
    harness: Harness,
) -> None:
    """Fetch and push fail with RemoteUnavailable naming the remote; what was fetched stays."""
    repo = harness.workspace()
    repo.sync()
    harness.unreachable()
    with pytest.raises(RemoteUnavailable, match="cannot be read"):
        repo.sync()
    assert repo.read_many("main", ["README.md"]) == {"README.md": README}
    with pytest.raises(RemoteUnavailable, match="check the remote and its credentials"):
        repo.commit_and_push(branch="main", base="main", edit=write("a", "1\n"), message="a")


def test_a_refused_push_is_permanent_and_says_why(harness: Harness) -> None:
    """A push the remote refuses (a hook, a protected branch) is a PermanentError with the
    remote's reason, and nothing lands."""
    repo = harness.workspace()
    tip = harness.tip("main")
    harness.refuse_pushes("main is protected")
    with pytest.raises(PermanentError, match="was refused") as refused:
        repo.commit_and_push(branch="main", base="main", edit=write("a", "1\n"), message="a")
    assert "main is protected" in str(refused.value)
    assert harness.tip("main") == tip


# -- the fake's own fault hooks ---------------------------------------------------------------


def test_the_fakes_races_are_lost_and_retried() -> None:
    """``races`` lands another writer's commit before each of the next pushes."""
    repo = MemoryReleaseRepository({"README.md": README}, max_attempts=3)
    repo.races = 2
    outcome = repo.commit_and_push(branch="new", base="main", edit=write("a", "1\n"), message="a")
    assert outcome.attempts == 3
    assert [c.subject for c in repo.remote.log("new")][:2] == ["a", "Another writer's change"]
    repo.races = 3
    with pytest.raises(GitConflict, match="lost the race 3 times"):
        repo.commit_and_push(branch="new", base="main", edit=write("a", "2\n"), message="a")


class Died(BaseException):
    """The controller's process ends here."""


def test_the_fake_dies_on_either_side_of_a_push() -> None:
    """``before_push`` raising leaves the remote as it was; ``after_push`` raising leaves the
    commit landed (the process died before it could say so)."""
    repo = MemoryReleaseRepository({"README.md": README})
    tip = repo.remote.tip("main")

    def die(*_: str) -> None:
        raise Died

    repo.before_push = die
    with pytest.raises(Died):
        repo.commit_and_push(branch="main", base="main", edit=write("a", "1\n"), message="a")
    assert repo.remote.tip("main") == tip
    repo.before_push, repo.after_push = None, die
    with pytest.raises(Died):
        repo.commit_and_push(branch="main", base="main", edit=write("a", "1\n"), message="a")
    assert repo.remote.files("main")["a"] == "1\n"
