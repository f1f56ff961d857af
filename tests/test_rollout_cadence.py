"""A rollout's pace is the policy's: analyses when they are due, short polls only for syncs.

Before, `sluice rollout` slept the global 60 s registry poll between passes: a rollback took
3 minutes and a rollout the README called "about a minute" took 7.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.rollout_values import POLICY, canary_target, observation

from controller.gates.sequential_watch import WatchConfig
from controller.rollout.actions import Hold, SetWeight, Wait, Watch
from controller.rollout.decide import decide
from controller.rollout.loop import RolloutLoop
from controller.rollout.pass_report import PassReport, wake_in
from controller.rollout.reconcile import Reconciler
from controller.rollout.record import AnalysisRecord


def report(wake_in: float | None, *, finished: bool = False) -> PassReport:
    from controller.rollout.actions import Outcome

    return PassReport(
        model="fd",
        environment="staging",
        phase="analysing",
        action="Wait",
        detail="",
        version=2,
        canary_percent=10,
        outcome=Outcome.PROMOTED if finished else None,
        wake_in=wake_in,
    )


def test_a_scheduled_analysis_says_when_it_is_due() -> None:
    """Waiting for the next analysis, the pass knows to the second when to come back; with the
    watch on (the default) it comes back every watch period until then."""
    unwatched = POLICY.model_copy(update={"watch": WatchConfig(enabled=False)})
    action = decide(observation(10, canary_target(10), changed_at=1000.0), unwatched, 1012.0)
    assert type(action) is Wait
    assert action.retry_after == 18.0
    assert wake_in(action, None, POLICY.interval_seconds) == 18.0
    watched = decide(observation(10, canary_target(10), changed_at=1000.0), POLICY, 1012.0)
    assert isinstance(watched, Watch)
    assert (watched.retry_after, watched.since, watched.period) == (18.0, 1000.0, 1.0)
    assert wake_in(watched, None, POLICY.interval_seconds) == 1.0
    # Never past the analysis: half a second before it is due, the pass comes then.
    assert wake_in(decide(observation(10, canary_target(10)), POLICY, 1029.5), None, 30.0) == 0.5


def test_after_a_commit_the_next_pass_comes_at_once_and_a_hold_waits_an_interval() -> None:
    """A commit is followed at once (to watch its sync); a held step waits the policy interval;
    a sync has no known end, so it is polled."""
    step = SetWeight(10, 50, ())
    assert wake_in(step, "a" * 40, 30.0) == 0.0
    assert wake_in(Hold(AnalysisRecord("c" * 40, 10), "no data"), None, 30.0) == 30.0
    assert wake_in(Wait("waiting for staging to sync", "progressing"), None, 30.0) is None


def test_run_sleeps_until_the_analysis_is_due_not_the_registry_poll() -> None:
    """Reconciler.run sleeps what each pass says, polling only when nothing is scheduled."""
    passes = iter([report(None), report(18.0), report(0.0), report(None, finished=True)])
    slept: list[float] = []

    class Scripted(Reconciler):
        def __init__(self) -> None:
            pass

        def reconcile(self, environment: str, model: str) -> PassReport:
            return next(passes)

    last = Scripted().run("staging", "fd", poll_seconds=2.0, sleep=slept.append)
    assert last.finished
    assert slept == [2.0, 18.0]


def test_serve_wakes_for_the_soonest_due_rollout() -> None:
    """`sluice serve` passes every registry interval, sooner while a rollout has work due."""
    loop = RolloutLoop(reconciler=None, releases=list, interval_seconds=60.0, poll_seconds=2.0)  # type: ignore[arg-type]
    assert loop.next_pass_in() == 60.0
    loop.last = {("staging", "a"): report(25.0), ("production", "b"): report(None, finished=True)}
    assert loop.next_pass_in() == 25.0
    loop.last[("staging", "c")] = report(None)
    assert loop.next_pass_in() == 2.0


def test_poll_interval_is_validated_with_one_line(tmp_path: Path) -> None:
    """`--poll-interval 0` is bad input: exit 2 and one line naming the setting."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("sluice")), "rollout", "fd", "--env", "local",
         "--poll-interval", "0"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
        env={**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "rollout_poll_interval_seconds" in line or "poll" in line
