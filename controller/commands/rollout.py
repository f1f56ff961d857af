"""``sluice rollout``, ``rollback`` and ``status``: wire the backends to the rollout core.

The composition root of the rollout commands: the only place their concrete backends
(MLflow, Git, Prometheus, Locust, the local target or a cluster, the notifier) are named.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from rich.console import Console

from controller.commands.evidence import pipeline_of, print_pipeline
from controller.commands.rollout_backends import TargetKind, build_reconciler
from controller.commands.status_graphs import graph_sections
from controller.commands.status_rows import status_row, status_rows
from controller.errors import InputError
from controller.lease import Lease, LeaseKeeper, lease_name
from controller.null_ports import NO_FORGE
from controller.ports import (
    Forge,
)
from controller.rollout.actions import (
    Outcome,
    Quarantine,
    RestorePrevious,
    StartRollback,
    Wait,
)
from controller.rollout.decide import manual_rollback
from controller.rollout.observe import (
    load_release,
)
from controller.rollout.pass_report import PassReport
from controller.rollout.reconcile import Reconciler
from controller.settings import Settings
from controller.status.graph_view import graph_notes, graph_table
from controller.status.status_view import status_notes, status_table

__all__ = ["exit_code", "run_rollback", "run_rollout", "run_status"]

_LEASE_WAIT_SLACK_SECONDS = 5.0


def _print_pass(report: PassReport, console: Console) -> None:
    stamp = time.strftime("%H:%M:%S")
    weight = f" at {report.canary_percent}%" if report.canary_percent is not None else ""
    version = f"v{report.version}{weight}" if report.version is not None else "-"
    lines = [f"{stamp} {report.model} {version} [{report.phase}] {report.detail}"]
    lines += [f"         {result.verdict.value:<12} {result.summary}" for result in report.results]
    for line in lines:
        # Plain text, never wrapped: "[analysing]" is no Rich markup, and a log keeps it whole.
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def _pass_key(report: PassReport) -> tuple[object, ...]:
    """What a pass printed, but its time: a pass with the same key says nothing new."""
    return (report.model, report.version, report.canary_percent, report.phase, report.detail)


def exit_code(report: PassReport) -> int:
    """0 promoted or nothing to do, 1 rolled back or failed, 0 while still running (--once)."""
    return 1 if report.outcome in (Outcome.ROLLED_BACK, Outcome.FAILED) else 0


def run_rollout(
    settings: Settings,
    *,
    model: str,
    environment: str,
    once: bool,
    target: TargetKind,
    remote: str | None,
    as_json: bool,
    console: Console,
    forge: Forge = NO_FORGE,
) -> int:
    """One pass (``--once``) or passes until the rollout ends; returns the exit code.

    Each pass prints its lines (piped, a pass that only repeats the one before prints nothing:
    one line per change); in a terminal, the release's status is redrawn under them, as
    ``sluice status --watch`` draws it, until the rollout ends."""
    reconciler = build_reconciler(settings, target=target, remote=remote, forge=forge)
    reports: list[PassReport] = []
    printed: list[tuple[object, ...]] = []

    def print_changed(report: PassReport, out: Console) -> None:
        key = _pass_key(report)
        if printed and printed[-1] == key and not report.results and report.commit is None:
            return
        printed.append(key)
        _print_pass(report, out)

    def on_pass(report: PassReport) -> None:
        reports.append(report)
        if not as_json:
            print_changed(report, console)

    try:
        if once:
            on_pass(reconciler.reconcile(environment, model))
        elif console.is_terminal and not as_json:
            from controller.commands.status import RolloutLive

            def row() -> dict[str, Any]:
                return dict(status_row(reconciler, environment, model, time.time()))

            with RolloutLive(console, row, print_changed) as live:

                def on_live_pass(report: PassReport) -> None:
                    reports.append(report)
                    live.on_pass(report)

                reconciler.run(
                    environment,
                    model,
                    poll_seconds=settings.rollout_poll_interval_seconds,
                    on_pass=on_live_pass,
                    sleep=live.sleep,
                )
        else:
            reconciler.run(
                environment,
                model,
                poll_seconds=settings.rollout_poll_interval_seconds,
                on_pass=on_pass,
            )
    finally:
        if reconciler.lease is not None:
            reconciler.lease.release_all()
    last = reports[-1]
    if as_json:
        console.print_json(json.dumps({"passes": [r.as_dict() for r in reports]}))
    return exit_code(last)


def run_rollback(
    settings: Settings,
    *,
    model: str,
    environment: str,
    reason: str,
    target: TargetKind,
    remote: str | None,
    wait: bool,
    console: Console,
    forge: Forge = NO_FORGE,
) -> int:
    """Start a rollback by hand (the same commit a failed gate makes), then see it through.

    It first takes the release's lease, as a controller does: a controller walking the
    rollout hands it over at its next renewal, and then follows (see :mod:`controller.lease`),
    so the rollback is decided on what that controller last did and never commits beside it.
    """
    if not reason.strip():
        raise InputError("--reason must say why (it goes into the commit and the quarantine tag)")
    reconciler = build_reconciler(settings, target=target, remote=remote, forge=forge)
    try:
        if reconciler.lease is not None:
            reconciler.lease.holder = f"sluice-rollback:{reconciler.lease.holder}"
            _take_lease(reconciler.lease, lease_name(environment, model), console)
        _roll_back(reconciler, model, environment, reason, console)
        if not wait:
            return 0
        last = reconciler.run(
            environment,
            model,
            poll_seconds=settings.rollout_poll_interval_seconds,
            on_pass=lambda report: _print_pass(report, console),
        )
    finally:
        if reconciler.lease is not None:
            reconciler.lease.release_all()
    return 0 if last.outcome is Outcome.ROLLED_BACK else exit_code(last)


def _take_lease(keeper: LeaseKeeper, name: str, console: Console) -> None:
    """Hold ``name``, waiting for its holder to hand it over or let it expire (at most one
    lease duration, and a little for the polling)."""
    announced: set[str] = set()

    def waiting(held: Lease) -> None:
        if held.holder in announced:
            return
        announced.add(held.holder)
        left = max(0, math.ceil(held.expires_at - time.time()))
        console.print(
            f"waiting for {held.holder}'s lease on {name} (expires in {left} s; asked it to "
            "hand the lease over at its next renewal)"
        )

    keeper.acquire(
        name, wait_seconds=keeper.duration_seconds + _LEASE_WAIT_SLACK_SECONDS, on_wait=waiting
    )
    if announced:
        console.print(f"took the lease on {name}: no other controller acts on it now")


def _roll_back(
    reconciler: Reconciler, model: str, environment: str, reason: str, console: Console
) -> None:
    """Commit the rollback ``manual_rollback`` decides on the release as it is now."""
    obs = reconciler.observe(environment, model)
    previous_champion = None
    if obs.pin.version is not None:
        tags = reconciler.registry.resolve(model, version=obs.pin.version).tags
        previous_champion = _int_or_none(tags.get("sluice.previous_champion"))
    action = manual_rollback(obs, " ".join(reason.split()), previous_champion)
    if isinstance(action, Wait):
        return
    from controller.rollout.act import Actuator

    ref = load_release(reconciler.workspace, environment, model)
    actuator = Actuator(
        ref,
        reconciler.workspace,
        reconciler.registry,
        reconciler.notifier,
        reconciler.metrics,
        reconciler.forge,
    )
    now = time.time()
    if isinstance(action, RestorePrevious):
        # Undoing a promotion: a person judged the version, so it is quarantined first
        # (a crash after this line leaves it quarantined and the pin unchanged: rerun).
        actuator.act(Quarantine(action.version, action.reason), obs, now)
    done = actuator.act(action, obs, now)
    what = "rollback" if isinstance(action, StartRollback) else f"restore of v{action.previous}"
    if done.commit is None:
        console.print(f"{what} of {model} v{obs.pin.version}: done already, nothing committed")
    else:
        console.print(f"{what} of {model} v{obs.pin.version} committed: {done.commit}")


def run_status(
    settings: Settings,
    *,
    environment: str | None,
    target: TargetKind,
    remote: str | None,
    as_json: bool,
    console: Console,
    watch: bool = False,
    interval_seconds: float = 2.0,
) -> None:
    """Per model and environment: what serves, the canary (or its smoke test), the phase, the
    controller that holds the release's lease, the last gates, the time in phase and the next
    analysis; then each InferenceGraph the target runs there, its members with their
    releases' version and phase and their share of the graph's requests. With ``watch``, the
    releases again every ``interval_seconds`` until interrupted."""
    reconciler = build_reconciler(settings, target=target, remote=remote)
    if watch:
        from controller.commands.status import watch_status

        watch_status(
            lambda: status_rows(reconciler, environment, target=target),
            console=console,
            interval_seconds=interval_seconds,
            pipeline=lambda: pipeline_of(settings, reconciler, environment),
        )
        return
    rows = status_rows(reconciler, environment, target=target)
    graphs, graphs_unknown = graph_sections(
        reconciler.target,
        reconciler.analyzer.metrics,
        reconciler.workspace,
        rows,
        environment,
        kind=target,
    )
    pipeline, pipeline_notes = pipeline_of(settings, reconciler, environment)
    if as_json:
        document = {
            "releases": rows, "graphs": graphs, "graphNotes": graphs_unknown,
            "pipeline": pipeline, "pipelineNotes": pipeline_notes,
        }  # fmt: skip
        console.print_json(json.dumps(document))
        return
    console.print(status_table(rows, width=console.width, now=time.time()))
    for row in rows:
        for note in status_notes(row):
            line = f"{row['model']} in {row['environment']}: {note}"
            console.print(line, soft_wrap=True, markup=False, highlight=False)
    for row in rows:
        release = f"{row['model']} in {row['environment']}"
        retraining = row.get("retraining")
        if isinstance(retraining, dict):
            line = f"{release}: last retraining {retraining['summary']}"
            console.print(line, soft_wrap=True, markup=False)
        drift = row.get("drift")
        if isinstance(drift, dict) and drift.get("on") is not True:
            console.print(f"{release}: drift {drift['summary']}", soft_wrap=True, markup=False)
    for section in graphs:
        console.print(graph_table(section, width=console.width))
        for note in graph_notes(section):
            line = f"{section['name']} in {section['environment']}: {note}"
            console.print(line, soft_wrap=True, markup=False, highlight=False)
    for line in graphs_unknown:
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    print_pipeline(console, pipeline, pipeline_notes)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
