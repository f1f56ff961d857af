"""The processes one rollout pass starts (git, kubectl kustomize) and its CPU, against the old.

A rollout pass reads the same things between two fetches (the branch's tip, the default
branch, the environment file, the pin and its last change) and renders each commit's overlay
before pushing it. The old pass started a ``git`` process for every read (``rev-parse``,
``symbolic-ref``, ``show``, ``cat-file``, ``log``) and a ``kubectl kustomize`` for every
render; the current one reads the refs once per sync (``for-each-ref``), files through one
long-lived ``cat-file --batch`` and by commit, and remembers renders by the files they read
(:mod:`controller.backends.git_snapshot`, :mod:`controller.manifests.render_cache`).

Both run here in one process, one after the other, each a whole rollout of a good version
(proposed and merged, smoke, 10 %, 50 %, promoted) against its own bare remote, with real git
and kustomize and the in-memory registry, cluster, metrics and load of
:mod:`controller.testing` (the old way is reproduced by ``OldWorkspace`` below, the render
memory and the fake cluster's ref reads turned off). Every process started is counted by
kind at :mod:`subprocess`; CPU is this process's plus its children's. Usage:
python benchmarks/rollout_pass_processes.py [--rollouts 3]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from git import GitCommandError  # noqa: E402

from controller.backends import git_history  # noqa: E402
from controller.backends.git_repo import GitWorkspace  # noqa: E402
from controller.demo.gitops_remote import merge_branch, seed_gitops_remote  # noqa: E402
from controller.manifests import render  # noqa: E402
from controller.manifests.render_cache import forget_all  # noqa: E402
from controller.null_ports import NoForge  # noqa: E402
from controller.ports import ChangeInfo  # noqa: E402
from controller.proposals.propose import ProposalRequest, propose  # noqa: E402
from controller.rollout.analysis import Analyzer  # noqa: E402
from controller.rollout.reconcile import Reconciler  # noqa: E402
from controller.testing import (  # noqa: E402
    InstantCluster,
    ManualClock,
    RecordingNotifier,
    ScriptedLoad,
    ScriptedMetrics,
)
from controller.testing import cluster as fake_cluster  # noqa: E402
from controller.testing.registry import MemoryRegistry  # noqa: E402

MODEL, ENV = "fraud-detector", "local"
INTERVAL = 8.0  # the local overlay's rollout.interval
ROWS = [{"amount": 12.5, "hour": 3}, {"amount": 80.0, "hour": 22}]


class OldWorkspace(GitWorkspace):
    """The reads as they were before the snapshot: one git process per call."""

    def remote_sha(self, branch: str) -> str | None:
        try:
            return str(
                self.repo.git.rev_parse("--verify", "--quiet", f"refs/remotes/origin/{branch}")
            )
        except GitCommandError:
            return None

    def read(self, branch: str, path: str) -> str | None:
        try:
            return str(self.repo.git.show(f"refs/remotes/origin/{branch}:{path}"))
        except GitCommandError:
            return None

    def read_many(self, branch: str, paths: list[str]) -> dict[str, str | None]:
        request = "".join(f"refs/remotes/origin/{branch}:{path}\n" for path in paths).encode()
        done = subprocess.run(
            ["git", f"--git-dir={self.repo.git_dir}", "cat-file", "--batch"],
            input=request, capture_output=True, check=True,
        )  # fmt: skip
        out, position, found = done.stdout, 0, {}
        for path in paths:
            end = out.index(b"\n", position)
            header, position = out[position:end].split(), end + 1
            if header[-1] == b"missing":
                found[path] = None
                continue
            size = int(header[2])
            found[path] = out[position : position + size].decode("utf-8")
            position += size + 1
        return found

    def default_branch(self) -> str:
        try:
            ref = str(self.repo.git.symbolic_ref("--quiet", "refs/remotes/origin/HEAD"))
        except GitCommandError:
            return "main"
        return ref.removeprefix("refs/remotes/origin/")

    def last_change(self, branch: str, path: str) -> ChangeInfo | None:
        return git_history.last_change(self.repo, f"refs/remotes/origin/{branch}", path)


@contextlib.contextmanager
def counted() -> Iterator[Counter[str]]:
    """Every process started inside, by program and git subcommand."""
    started: Counter[str] = Counter()
    execute = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def counting(self: Any, args: Any, *rest: Any, **kwargs: Any) -> Any:
        words = [str(a) for a in args if not str(a).startswith("--git-dir")]
        started[" ".join([Path(words[0]).name, *words[1:2]])] += 1
        return execute(self, args, *rest, **kwargs)

    subprocess.Popen._execute_child = counting  # type: ignore[attr-defined]
    try:
        yield started
    finally:
        subprocess.Popen._execute_child = execute  # type: ignore[attr-defined]


@contextlib.contextmanager
def the_old_way() -> Iterator[None]:
    """No render memory and a ``rev-parse`` per poll of the fake cluster, as before."""
    key, tip = render.tree_key, InstantCluster._tip
    render.tree_key = lambda *_: None  # type: ignore[assignment]
    InstantCluster._tip = lambda self: self._git(  # type: ignore[method-assign]
        "rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}"
    )
    try:
        yield
    finally:
        render.tree_key, InstantCluster._tip = key, tip  # type: ignore[method-assign]


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def git_dates(now: float) -> None:
    """Commits dated by the manual clock, so the rollout's intervals and ages agree."""
    for variable in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
        os.environ[variable] = f"@{int(now)} +0000"


def rollouts(workdir: Path, workspace_type: type[GitWorkspace], count: int) -> dict[str, Any]:
    """``count`` rollouts of good versions, one after the other; the processes and CPU of
    their passes (the proposals and merges are not counted)."""
    remote = seed_gitops_remote(ROOT, workdir / "gitops.git")
    forget_all()  # each run renders its trees afresh, in the overlay's memory and the fake's
    fake_cluster._RENDERED.clear()
    registry, clock = MemoryRegistry(), ManualClock(1_700_000_000.0, on_change=git_dates)
    git_dates(clock())
    cluster = InstantCluster(remote, ready_after=0, clock=clock)
    analyzer = Analyzer(
        registry=registry,
        metrics=ScriptedMetrics(cluster),
        load=ScriptedLoad(cluster),
        sleep=clock.sleep,
    )
    reconciler = Reconciler(
        workspace=workspace_type(str(remote), workdir / "controller"),
        registry=registry,
        target=cluster,
        analyzer=analyzer,
        notifier=RecordingNotifier(),
        clock=clock,
    )
    processes: Counter[str] = Counter()
    passes, cpu = 0, 0.0
    for _ in range(count + 1):  # the first deploys, each other one is a canary
        version = registry.register(MODEL, inputs=ROWS)
        proposal = propose(
            ProposalRequest(model=MODEL, environment=ENV, version=version),
            registry=registry,
            workspace=GitWorkspace(str(remote), workdir / "proposer"),
            forge=NoForge(),
        )
        merge_branch(remote, proposal.branch)
        for _ in range(80):
            before = cpu_seconds()
            with counted() as started:
                report = reconciler.reconcile(ENV, MODEL)
            cpu += cpu_seconds() - before
            processes.update(started)
            passes += 1
            if report.finished:
                break
            waiting = report.action == "Wait" and report.phase == "analysing"
            clock.advance(INTERVAL if waiting else 1.0)
        else:
            raise SystemExit(f"the rollout of v{version} never finished: {report}")
    return {"passes": passes, "processes": processes, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=3, help="canary rollouts (default 3)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        with the_old_way():
            old = rollouts(Path(tmp) / "old", OldWorkspace, args.rollouts)
        new = rollouts(Path(tmp) / "new", GitWorkspace, args.rollouts)
    kinds = sorted(set(old["processes"]) | set(new["processes"]),
                   key=lambda k: -old["processes"][k] - new["processes"][k])  # fmt: skip
    print(f"{'per pass':<24} {'old':>8} {'current':>8}")
    for kind in kinds:
        per = [run["processes"][kind] / run["passes"] for run in (old, new)]
        print(f"{kind:<24} {per[0]:>8.2f} {per[1]:>8.2f}")
    totals = [sum(run["processes"].values()) / run["passes"] for run in (old, new)]
    cpu = [1000 * run["cpu"] / run["passes"] for run in (old, new)]
    print(f"{'processes':<24} {totals[0]:>8.2f} {totals[1]:>8.2f}")
    print(f"{'CPU ms (with children)':<24} {cpu[0]:>8.1f} {cpu[1]:>8.1f}")
    print(
        f"{args.rollouts} rollouts, {old['passes']} and {new['passes']} passes: "
        f"{totals[0] / totals[1]:.1f}x fewer processes, {cpu[0] / cpu[1]:.1f}x less CPU per pass"
    )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
