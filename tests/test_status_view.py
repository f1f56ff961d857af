"""What `sluice status` draws from its rows: durations, the table at 80 columns, the piped
line, the next command, and the gates read back from a rollout commit's body. Pure
functions over plain rows; the commands that gather the rows are tested in
tests/test_status_watch.py."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from controller.analysis_types import GateResult, Verdict
from controller.rollout.messages import RolloutCommit, gates_in_message, render_rollout_message
from controller.status.status_page import CanaryChart, Series, render_status_page, svg_chart
from controller.status.status_view import (
    change_key,
    format_duration,
    next_step,
    status_line,
    status_table,
)

NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (45, "45s"),
        (59.99, "59s"),
        (60, "1m 00s"),
        (125, "2m 05s"),
        (3599, "59m 59s"),
        (3600, "1h 00m"),
        (3900, "1h 05m"),
        (86399, "23h 59m"),
        (86400, "1d 00h"),
        (12 * 86400 + 12 * 3600 + 59, "12d 12h"),
        (-5, "0s"),
        (float("nan"), "-"),
        (float("inf"), "-"),
    ],
)
def test_durations_read_as_two_units(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "environment": "staging",
        "model": "fraud-detector",
        "version": 7,
        "serving": "v6",
        "champion": 6,
        "challenger": 7,
        "shadowVerdict": None,
        "shadowPercent": None,
        "canaryPercent": 10,
        "smoke": False,
        "phase": "analysing",
        "lease": None,
        "secondsInPhase": 125.0,
        "phaseSince": NOW - 125,
        "nextAnalysisAt": NOW + 55,
        "quarantined": None,
        "aborted": None,
        "target": "synced",
        "gates": [
            {
                "gate": "prometheus/request-success-rate",
                "verdict": "pass",
                "summary": "request-success-rate 99.95% (min 99%) vs primary 99.91%",
            },
            {
                "gate": "prometheus/request-latency",
                "verdict": "pass",
                "summary": "request-latency p99 41.2 ms (max 500 ms, max +50% vs primary) "
                "vs primary 39.8 ms",
            },
        ],
        "gatesFrom": "commit 0123456789ab",
        "rolledBack": None,
        "versions": [{"version": 5, "state": "quarantined", "reason": "smoke failed"}],
    }
    row.update(changes)
    row["hint"] = next_step(row, target="kubernetes")
    return row


def _render(rows: list[dict[str, object]], width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False)
    console.print(status_table(rows, width=width, now=NOW))
    return out.getvalue()


def test_at_80_columns_the_table_drops_columns_instead_of_truncating_cells() -> None:
    """At 80 columns the least useful columns go (controller, champion / challenger, ...);
    what stays is whole: no cell ends in an ellipsis, no line is wider than 80, and the
    gates keep their numbers. At 200 columns every column is there."""
    rows = [_row(), _row(model="churn-classifier-eu", canaryPercent=50)]
    narrow = _render(rows, 80)
    assert all(len(line) <= 80 for line in narrow.splitlines()), narrow
    for rendered in (narrow, _render(rows, 120), _render(rows, 100)):
        top, header = rendered.splitlines()[1:3]
        assert top.endswith("┓"), rendered  # the whole table, not cropped at the edge
        assert "last gates" in header
    assert "…" not in narrow
    assert "controller" not in narrow
    flat = " ".join(narrow.replace("│", " ").split())
    for whole in ("staging/fraud-detector", "staging/churn-classifier-eu", "analysing", "v7 10%"):
        assert whole in flat, narrow
    assert "99.95%" in flat
    assert "41.2 ms" in flat
    wide = _render(rows, 200)
    for header in ("environment", "serving", "champion / challenger", "in phase"):
        assert header in wide
    assert "next analysis" in wide
    assert "2m 05s" in wide
    assert "no controller holds it" in wide


def test_a_first_deploy_in_promoting_without_a_controller_says_to_run_sluice_rollout() -> None:
    row = _row(phase="promoting", canaryPercent=None, version=1, serving="v1")
    assert row["hint"] == (
        "no controller drives it: run `sluice rollout fraud-detector --env staging "
        "--target kubernetes`"
    )
    held = _row(phase="promoting", lease={"holder": "ctl-a", "expiresAtEpoch": NOW + 30})
    assert held["hint"] is None
    assert next_step(_row(version=None, phase="idle"), target="local") == (
        "nothing is pinned: run `sluice propose fraud-detector --env staging`"
    )


def test_after_a_rollback_the_hint_names_the_version_that_serves_again() -> None:
    """A rollback restores the previous pin: the pinned version serves, and was not the one
    rolled back (the hint said "v6 was rolled back" while v6 served)."""
    restored = _row(phase="rolled_back", version=6, serving="v6", canaryPercent=None)
    assert restored["hint"] == (
        "rolled back to v6, which serves: register a fixed version, then "
        "`sluice propose fraud-detector --env staging`"
    )
    nothing_serves = _row(phase="rolled_back", version=1, serving=None, canaryPercent=None)
    assert str(nothing_serves["hint"]).startswith("v1 was rolled back: register a fixed version")


def test_the_piped_line_changes_only_when_more_than_the_clocks_change() -> None:
    """The line has every fact on one line; a later look at the same state has the same key,
    a new weight or gate a new one."""
    line = status_line(_row(), NOW)
    assert time.strftime("%H:%M:%S", time.localtime(NOW)) in line
    assert "staging/fraud-detector [analysing] serving v6 canary v7 10% in phase 2m 05s" in line
    assert "next analysis in 55s" in line
    assert "pass: request-success-rate 99.95%" in line
    assert "v5 quarantined: smoke failed" in line
    assert "run `sluice rollout fraud-detector --env staging --target kubernetes`" in line
    later = _row(secondsInPhase=130.0, nextAnalysisAt=NOW + 50)
    assert change_key(later) == change_key(_row())
    assert change_key(_row(canaryPercent=50)) != change_key(_row())


def test_gates_in_a_rollout_commit_body_read_back() -> None:
    results = (
        GateResult("prometheus/request-success-rate", Verdict.PASS, "request-success-rate 100%"),
        GateResult("locust", Verdict.INCONCLUSIVE, "locust: 0 of 50 requests failed"),
        GateResult("judge/latency", Verdict.FAIL, "p99 +80% (max +50%)"),
    )
    message = render_rollout_message(
        RolloutCommit("m", 2, "local", "step", "canary 10% → 50%", "why", results=results)
    )
    read = gates_in_message(message)
    assert [(r.gate, r.verdict) for r in read] == [(r.gate, r.verdict) for r in results]
    assert [r.summary for r in read[:2]] == [r.summary for r in results[:2]]
    assert read[2].summary.endswith("p99 +80% (max +50%)")
    assert gates_in_message("m v2 → local\n\nno gates here\n") == ()


def test_the_page_escapes_what_it_shows_and_draws_both_revisions() -> None:
    chart = CanaryChart(
        metric="success-rate",
        title="success rate",
        unit="%",
        start=NOW - 60,
        end=NOW,
        series=(
            Series("canary", "canary r2", ((NOW - 60, 100.0), (NOW - 30, 99.0), (NOW, 98.0))),
            Series("primary", "primary r1", ((NOW - 60, 100.0), (NOW, float("nan")))),
        ),
    )
    svg = svg_chart(chart)
    assert 'data-role="canary"' in svg
    assert "<circle" in svg  # the primary's lone point before its gap
    page = render_status_page(
        [_row(model="<script>x</script>")], {("staging", "<script>x</script>"): [chart]}, now=NOW
    )
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert 'class="chart" data-metric="success-rate"' in page
    empty = svg_chart(CanaryChart("p99", "p99", " ms", NOW - 60, NOW, note="no requests yet"))
    assert "no requests yet" in empty
