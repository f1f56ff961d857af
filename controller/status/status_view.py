"""What ``sluice status`` (once, ``--watch``) and ``sluice rollout`` show, from plain rows.

A status row is the JSON ``sluice status --json`` prints for one release (a ``dict``): this
module only reads it. Everything here is pure: the table for a terminal of a given width, one
line per release for a pipe, the next command a user would type, and durations a person reads
(``2m 05s``, ``12d 12h``). The commands gather the rows (:mod:`controller.commands.status_rows`)
and decide where they go.

A table never truncates every cell to fit: columns are dropped, least useful first, until the
rest fit at their narrowest (the longest word of each); what is dropped is still in the lines
printed under the table and in ``--json``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

__all__ = [
    "ACTIVE_PHASES",
    "change_key",
    "format_duration",
    "gate_lines",
    "next_analysis_text",
    "next_step",
    "status_line",
    "status_notes",
    "status_table",
    "weight_text",
]

Row = Mapping[str, Any]

#: Phases in which a rollout has something left to do: someone has to run it.
ACTIVE_PHASES = frozenset(
    {"progressing", "analysing", "smoke_testing", "shadowing", "promoting", "rolling_back"}
)


def format_duration(seconds: float) -> str:
    """``45s``, ``2m 05s``, ``1h 05m``, ``12d 12h``: the two largest units, the second padded.

    Negative durations read ``0s``; NaN and infinities ``-``.
    """
    if not math.isfinite(seconds):
        return "-"
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def weight_text(row: Row) -> str:
    """``v2 10%``, ``v5 shadow (50% mirrored)``, ``v4 smoke test at 0%`` or ``-``."""
    version = f"v{row['version']}" if row.get("version") is not None else "-"
    if row.get("shadowPercent") is not None:
        return f"{version} shadow ({row['shadowPercent']:g}% mirrored)"
    if row.get("smoke"):
        return f"{version} smoke test at 0%"
    if row.get("canaryPercent"):
        return f"{version} {row['canaryPercent']}%"
    return "-"


def gate_lines(row: Row) -> list[str]:
    """One line per gate of the last analysis: ``pass  request-success-rate 100% (...)``."""
    return [f"{gate['verdict']}: {gate['summary']}" for gate in row.get("gates") or ()]


def in_phase_text(row: Row, now: float) -> str:
    """How long the release has been in its phase, ticking from ``phaseSince`` when known."""
    since = row.get("phaseSince")
    seconds = now - float(since) if since else float(row.get("secondsInPhase") or 0.0)
    return format_duration(seconds)


def next_analysis_text(row: Row, now: float) -> str:
    """``due now``, ``in 55s (12:01:05)`` or ``-`` when no analysis is scheduled."""
    due = row.get("nextAnalysisAt")
    if due is None:
        return "-"
    left = float(due) - now
    if left <= 0.5:
        return "due now"
    return f"in {format_duration(left)} ({time.strftime('%H:%M:%S', time.localtime(due))})"


def next_step(row: Row, *, target: str = "local") -> str | None:
    """The command a user would type next for this release, in words; None: nothing to do.

    A rollout with something left to do that no controller holds needs ``sluice rollout``
    (a first deploy sitting in ``promoting`` included); a release with nothing pinned, or
    whose version was rolled back, needs a proposal.
    """
    model, environment = row["model"], row["environment"]
    flags = f" --env {environment}" + ("" if target == "local" else f" --target {target}")
    phase = str(row.get("phase") or "")
    if phase in ACTIVE_PHASES and not row.get("lease"):
        return f"no controller drives it: run `sluice rollout {model}{flags}`"
    if row.get("version") is None:
        return f"nothing is pinned: run `sluice propose {model} --env {environment}`"
    if phase in ("rolled_back", "failed"):
        propose = f"register a fixed version, then `sluice propose {model} --env {environment}`"
        if row.get("serving") == f"v{row['version']}":
            # The pin is the version the rollback restored, not the one rolled back.
            return f"rolled back to v{row['version']}, which serves: {propose}"
        return f"v{row['version']} was rolled back: {propose}"
    return None


def status_notes(row: Row) -> list[str]:
    """Lines about the release beyond the table: the pinned version's rollback, the versions
    quarantined or aborted here, and the hint."""
    notes = []
    rolled = row.get("rolledBack")
    if rolled:
        notes.append(f"v{row['version']} {rolled['verdict']}: {rolled['reason']}")
    elif row.get("quarantined"):
        notes.append(f"v{row['version']} quarantined: {row['quarantined']}")
    elif row.get("aborted"):
        notes.append(f"v{row['version']} aborted: {row['aborted']}")
    for version in row.get("versions") or ():
        notes.append(f"v{version['version']} {version['state']}: {version['reason']}")
    if row.get("hint"):
        notes.append(f"next: {row['hint']}")
    return notes


def change_key(row: Row) -> tuple[object, ...]:
    """What makes a release's line worth printing again when piped: everything but clocks."""
    lease = row.get("lease") or {}
    return (
        row.get("version"),
        row.get("phase"),
        row.get("serving"),
        weight_text(row),
        tuple(gate_lines(row)),
        lease.get("holder"),
        row.get("nextAnalysisAt") is not None,
        row.get("target"),
        tuple(status_notes(row)),
    )


def status_line(row: Row, now: float) -> str:
    """One line for a pipe: who, where, phase, weight, time in phase, next analysis, gates."""
    parts = [
        time.strftime("%H:%M:%S", time.localtime(now)),
        f"{row['environment']}/{row['model']}",
        f"[{row['phase']}]",
        f"serving {row.get('serving') or '-'}",
        f"canary {weight_text(row)}",
        f"in phase {in_phase_text(row, now)}",
    ]
    if row.get("nextAnalysisAt") is not None:
        parts.append(f"next analysis {next_analysis_text(row, now)}")
    lease = row.get("lease")
    if lease:
        parts.append(f"controller {_holder(row)}")
    gates = gate_lines(row)
    if gates:
        parts.append("gates: " + "; ".join(gates))
    notes = status_notes(row)
    if notes:
        parts.append("| " + "; ".join(notes))
    return " ".join(parts)


@dataclass(frozen=True)
class _Column:
    header: str
    #: Lower is kept longer when the terminal is narrow.
    priority: int
    cell: Callable[[Row, float], str]
    #: A column whose cells may wrap: its narrowest is capped (the gates).
    wraps: bool = False


def _holder(row: Row) -> str:
    lease = row.get("lease")
    if lease is None:
        return "no controller holds it"
    if "error" in lease:
        return f"unknown: {lease['error']}"
    until = time.strftime("%H:%M:%S", time.localtime(lease["expiresAtEpoch"]))
    return f"{lease['holder']} until {until}"


def _pair(row: Row) -> str:
    """``v2 / v5 (shadow pass)``: the champion, the challenger and its shadow verdict."""
    champion = f"v{row['champion']}" if row.get("champion") else "-"
    challenger = f"v{row['challenger']}" if row.get("challenger") else "-"
    verdict = str(row.get("shadowVerdict") or "").split(":", 1)[0]
    return f"{champion} / {challenger}" + (f" (shadow {verdict})" if verdict else "")


_COLUMNS = (
    _Column("environment", 6, lambda r, _: str(r["environment"])),
    _Column("model", 0, lambda r, _: str(r["model"])),
    _Column("serving", 5, lambda r, _: str(r.get("serving") or "-")),
    _Column("canary", 2, lambda r, _: weight_text(r)),
    _Column("champion / challenger", 8, lambda r, _: _pair(r)),
    _Column("phase", 1, lambda r, _: str(r["phase"])),
    _Column("in phase", 4, in_phase_text),
    _Column("next analysis", 7, next_analysis_text),
    _Column("controller", 9, lambda r, _: _holder(r)),
    _Column("last gates", 3, lambda r, _: "\n".join(gate_lines(r)) or "-", wraps=True),
)
#: Per column: one space of padding each side and a border; plus the closing border.
_COLUMN_OVERHEAD = 3
#: The narrowest a wrapping column is given before it is dropped instead.
_WRAP_MIN = 24


def _narrowest(column: _Column, cells: Sequence[str]) -> int:
    """A wrapping column's longest word (at most ``_WRAP_MIN``), another's longest line."""
    texts = (column.header, *cells)
    if not column.wraps:
        return max(len(line) for text in texts for line in text.splitlines() or [""])
    longest = max((len(word) for text in texts for word in text.split()), default=1)
    return min(longest, _WRAP_MIN)


def _cells(column: _Column, rows: Sequence[Row], now: float, headers: set[str]) -> list[str]:
    if column.header == "model" and "environment" not in headers:
        return [f"{r['environment']}/{r['model']}" for r in rows]
    return [column.cell(r, now) for r in rows]


def _fitting(rows: Sequence[Row], width: int, now: float) -> list[_Column]:
    """The columns that fit ``width`` at their narrowest, dropping the least useful first."""
    kept = sorted(_COLUMNS, key=lambda c: c.priority)
    while len(kept) > 2:
        headers = {c.header for c in kept}
        needed = 1 + sum(
            _narrowest(c, _cells(c, rows, now, headers)) + _COLUMN_OVERHEAD for c in kept
        )
        if needed <= width:
            break
        kept.pop()
    return [c for c in _COLUMNS if c in kept]


def status_table(rows: Sequence[Row], *, width: int, now: float) -> Table:
    """The status table for a terminal ``width`` columns wide (see the module docstring).

    When ``environment`` is dropped, the model column reads ``ENV/MODEL``.
    """
    columns = _fitting(rows, width, now)
    headers = {c.header for c in columns}
    table = Table(title="sluice status", expand=False)
    cells = [_cells(column, rows, now, headers) for column in columns]
    for column, texts in zip(columns, cells, strict=True):
        table.add_column(
            column.header,
            overflow="fold",
            no_wrap=not column.wraps,
            min_width=_narrowest(column, texts),
        )
    for index in range(len(rows)):
        table.add_row(*(Text(texts[index]) for texts in cells))
    return table
