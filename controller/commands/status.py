"""Watching releases: ``sluice status --watch``, the live view of ``sluice rollout``, and the
page at ``/`` of ``sluice serve``.

The rows are :func:`controller.commands.status_rows.status_rows`; what is drawn from them is pure
(:mod:`controller.status.status_view`, :mod:`controller.status.status_page`). In a terminal the
watch redraws one table in place (Rich Live); piped, it prints one line per release whenever
something but the clocks changed, so a log or ``grep`` sees each change once. The page's charts are
range queries through the Prometheus backend, the same builtin queries the canary gates run
(:func:`controller.gates.prometheus_checks.builtin_query`), per revision, over the rollout. Its
graphs are the sections ``sluice status`` prints
(:func:`controller.commands.status_graphs.graph_sections`), read the same way. The watch shows
the promotion pipeline under its releases as ``sluice status`` prints it
(:func:`controller.status.pipeline_view.pipeline_lines`): redrawn in a terminal, and piped a
model's lines again only when its path changed (:func:`~controller.status.pipeline_view.
pipeline_change_key`: a soak's clock moving is not a change).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from controller.backends.prometheus import PrometheusSource
from controller.commands.evidence import pipeline_of
from controller.commands.rollout_backends import TargetKind, build_reconciler
from controller.commands.status_graphs import graph_sections
from controller.commands.status_rows import status_rows
from controller.errors import ConfigError, MetricsUnavailable, SluiceError
from controller.gates.prometheus_checks import builtin_query
from controller.ports import ReleaseRepository
from controller.rollout.observe import load_release
from controller.rollout.pass_report import PassReport
from controller.rollout.reconcile import Reconciler
from controller.settings import Settings
from controller.status.pipeline_view import pipeline_change_key, pipeline_lines
from controller.status.status_page import CanaryChart, Series, render_status_page
from controller.status.status_view import (
    change_key,
    format_duration,
    status_line,
    status_notes,
    status_table,
)

__all__ = ["RolloutLive", "build_status_page", "canary_charts", "rollout_start", "watch_status"]

_log = logging.getLogger("sluice.status")

Rows = list[dict[str, Any]]
#: The promotion pipeline's entries and notes (:func:`controller.commands.evidence.pipeline_of`).
Pipeline = tuple[Rows, list[str]]
#: The longest stretch a chart covers (a rollout stuck for days shows its last day).
_CHART_MAX_SECONDS = 24 * 3600.0
#: The shortest: a rollout a few seconds old still gets a readable minute.
_CHART_MIN_SECONDS = 120.0
_CHART_POINTS = 180


def watch_status(
    fetch: Callable[[], Rows],
    *,
    console: Console,
    interval_seconds: float,
    clock: Callable[[], float] = time.time,
    stop: threading.Event | None = None,
    pipeline: Callable[[], Pipeline] | None = None,
) -> None:
    """Show ``fetch()`` every ``interval_seconds`` until Ctrl-C (or ``stop`` is set), and
    under it the promotion pipeline ``pipeline()`` reads, when given."""
    stop = stop or threading.Event()
    look = _Look(fetch, pipeline)
    try:
        if console.is_terminal:
            _watch_live(look, console, interval_seconds, clock, stop)
        else:
            _watch_lines(look, console, interval_seconds, clock, stop)
    except KeyboardInterrupt:
        return


def _fetch(fetch: Callable[[], Rows]) -> tuple[Rows | None, str | None]:
    try:
        return fetch(), None
    except SluiceError as exc:  # Git or the registry away for a moment: say so, keep watching
        return None, exc.message


class _Look:
    """One look of the watch: the releases' rows, and the pipeline when watched."""

    def __init__(self, fetch: Callable[[], Rows], pipeline: Callable[[], Pipeline] | None):
        self._fetch = fetch
        self._pipeline = pipeline

    def rows(self) -> tuple[Rows | None, str | None]:
        return _fetch(self._fetch)

    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            return [], []
        try:
            return self._pipeline()
        except SluiceError as exc:
            return [], [exc.message]


def _watch_live(
    look: _Look,
    console: Console,
    interval: float,
    clock: Callable[[], float],
    stop: threading.Event,
) -> None:
    rows: Rows = []
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while not stop.is_set():
            fetched, error = look.rows()
            rows = fetched if fetched is not None else rows
            now = clock()
            notes = [
                Text(f"{row['model']} in {row['environment']}: {note}")
                for row in rows
                for note in status_notes(row)
            ]
            footer = f"every {interval:g} s; Ctrl-C to stop"
            if error:
                notes.append(Text(f"could not refresh: {error}", style="red"))
            notes += [Text(line) for line in pipeline_lines(*look.pipeline())]
            view = Group(status_table(rows, width=console.width, now=now), *notes, Text(footer))
            live.update(view, refresh=True)
            stop.wait(interval)


def _watch_lines(
    look: _Look,
    console: Console,
    interval: float,
    clock: Callable[[], float],
    stop: threading.Event,
) -> None:
    shown: dict[tuple[str, str], tuple[object, ...]] = {}
    paths: dict[tuple[str, str], tuple[object, ...]] = {}
    last_error: str | None = None
    last_notes: list[str] = []
    while not stop.is_set():
        fetched, error = look.rows()
        now = clock()
        if error and error != last_error:
            console.print(f"could not refresh: {error}", soft_wrap=True, markup=False)
        last_error = error
        for row in fetched or ():
            key = change_key(row)
            release = (str(row["environment"]), str(row["model"]))
            if shown.get(release) != key:
                shown[release] = key
                console.print(status_line(row, now), soft_wrap=True, markup=False)
        entries, notes = look.pipeline()
        for entry in entries:
            path = (str(entry["environment"]), str(entry["model"]))
            changed = pipeline_change_key(entry)
            if paths.get(path) != changed:
                paths[path] = changed
                for line in pipeline_lines([entry], []):
                    console.print(line, soft_wrap=True, markup=False, highlight=False)
        for line in pipeline_lines([], [note for note in notes if note not in last_notes]):
            console.print(line, soft_wrap=True, markup=False, highlight=False)
        last_notes = notes
        console.file.flush()
        stop.wait(interval)


# -- sluice rollout in a terminal -------------------------------------------------------------


class RolloutLive:
    """``sluice rollout`` in a terminal: each pass's lines scroll by as they do piped, and under
    them one release's status (what ``sluice status --watch`` draws: phase, weight, last gates,
    time in phase, next analysis, controller) is redrawn every ``tick_seconds`` while the
    rollout waits, so the clocks move between passes.

    Use it as a context manager around :meth:`Reconciler.run`, passing :meth:`on_pass` and
    :meth:`sleep`. ``fetch_row`` reads the release's status row (once per pass, on the
    rollout's own thread and clone); ``print_pass`` prints a pass's lines.
    """

    def __init__(
        self,
        console: Console,
        fetch_row: Callable[[], dict[str, Any]],
        print_pass: Callable[[PassReport, Console], None],
        *,
        clock: Callable[[], float] = time.time,
        tick_seconds: float = 1.0,
    ) -> None:
        self.console = console
        self._fetch_row = fetch_row
        self._print_pass = print_pass
        self._clock = clock
        self._tick = tick_seconds
        self._row: dict[str, Any] | None = None
        self._error: str | None = None
        self._next_pass_at: float | None = None
        self._live = Live(console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> RolloutLive:
        self._live.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._live.stop()

    def on_pass(self, report: PassReport) -> None:
        """Print the pass above the view, read the release's row again and redraw."""
        self._print_pass(report, self.console)
        self._next_pass_at = None
        rows, self._error = _fetch(lambda: [self._fetch_row()])
        if rows:
            self._row = rows[0]
        self._draw()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` as the rollout asks, redrawing every tick."""
        end = time.monotonic() + seconds
        self._next_pass_at = self._clock() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(self._tick, left))
            self._draw()

    def _draw(self) -> None:
        now = self._clock()
        parts: list[Any] = []
        if self._row is not None:
            row = self._row
            parts.append(status_table([row], width=self.console.width, now=now))
            parts += [Text(note) for note in status_notes(row)]
        if self._error:
            parts.append(Text(f"could not refresh: {self._error}", style="red"))
        left = (
            ""
            if self._next_pass_at is None
            else f"next pass in {_seconds(self._next_pass_at - now)}; "
        )
        parts.append(Text(f"{left}Ctrl-C stops this command (the rollout's state is in Git)"))
        self._live.update(Group(*parts), refresh=True)


def _seconds(left: float) -> str:
    return format_duration(math.ceil(max(0.0, left)))


# -- the page ---------------------------------------------------------------------------------


def rollout_start(workspace: ReleaseRepository, branch: str, pin_path: str, version: int) -> float:
    """When the pinned ``version``'s rollout began: walking back the commits to the pin, the
    last of that version's rollout commits (``Sluice-Version`` trailer), or the commit without
    trailers before them that brought it in (the proposal's merge)."""
    start: float | None = None
    for change in workspace.changes(branch, pin_path):
        named = change.trailers.get("Sluice-Version")
        if named is not None and named != str(version):
            break
        start = change.time
        if named is None:
            break
    return start if start is not None else time.time()


def canary_charts(
    source: PrometheusSource | None,
    reconciler: Reconciler,
    row: dict[str, Any],
    now: float,
) -> list[CanaryChart]:
    """Success rate and p99 of the canary against the primary since the rollout began; empty
    when the release has no canary (nothing to compare)."""
    revisions = row.get("revisions")
    has_canary = row.get("canaryPercent") or row.get("smoke") or row.get("shadowPercent")
    if not revisions or not has_canary or row.get("version") is None:
        return []
    ref = load_release(reconciler.workspace, str(row["environment"]), str(row["model"]))
    began = rollout_start(reconciler.workspace, ref.branch, ref.pin_path, int(row["version"]))
    start = max(min(began, now - _CHART_MIN_SECONDS), now - _CHART_MAX_SECONDS)
    step = max(1.0, math.ceil((now - start) / _CHART_POINTS))
    gates = ref.policy.gates
    interval = next(
        (c.interval for c in gates.metrics if c.builtin == "request-success-rate"), "1m"
    )
    charts = []
    for metric, title, builtin, unit in (
        ("success-rate", "success rate", "request-success-rate", "%"),
        ("p99", "p99 latency", "request-latency", " ms"),
    ):
        series: list[Series] = []
        note = ""
        if source is None:
            note = "no Prometheus configured (SLUICE_PROMETHEUS_URL)"
        else:
            try:
                for role in ("canary", "primary"):
                    promql = builtin_query(
                        builtin,
                        namespace=revisions["namespace"],
                        configuration=revisions["configuration"],
                        revision=revisions[role],
                        interval=interval,
                        profile=gates.profile,
                    )
                    found = source.query_range(promql, start=start, end=now, step=step)
                    points = found[0].points if found else ()
                    suffix = str(revisions[role]).rsplit("-", 1)[-1]  # 00002 of NAME-00002
                    series.append(Series(role, f"{role} {suffix}", points))
            except (MetricsUnavailable, ConfigError) as exc:
                series, note = [], exc.message
        if series and not any(math.isfinite(v) for s in series for _, v in s.points):
            note = "no requests yet"
        charts.append(
            CanaryChart(
                metric=metric,
                title=f"{title}, canary vs primary (rate over {interval})",
                unit=unit,
                start=start,
                end=now,
                series=tuple(series),
                note=note,
            )
        )
    return charts


def build_status_page(
    settings: Settings,
    *,
    remote: str | None,
    target: TargetKind,
    environments: Sequence[str] | None = None,
    refresh_seconds: int = 5,
) -> Callable[[], str]:
    """The page's renderer: each call reads Git, the registry, the target and Prometheus
    afresh, the releases' rows and the graphs' sections as ``sluice status`` does. The
    backends are built at the first call, so a server starts without them."""
    lock = threading.Lock()
    built: list[Reconciler] = []

    def render() -> str:
        with lock:  # one clone, one reader at a time
            if not built:
                built.append(build_reconciler(settings, target=target, remote=remote))
            reconciler = built[0]
            metrics = reconciler.analyzer.metrics
            source = metrics if isinstance(metrics, PrometheusSource) else None
            rows: Rows = []
            errors: list[str] = []
            for environment in environments or (None,):
                try:
                    rows += status_rows(reconciler, environment, target=target)
                except SluiceError as exc:
                    errors.append(exc.message)
            now = time.time()
            charts = {}
            for row in rows:
                try:
                    charts[row["environment"], row["model"]] = canary_charts(
                        source, reconciler, row, now
                    )
                except SluiceError as exc:
                    errors.append(f"{row['model']} in {row['environment']}: {exc.message}")
            graphs, graph_notes = graph_sections(
                reconciler.target, metrics, reconciler.workspace, rows, None, kind=target
            )
            pipeline: Rows = []
            for environment in environments or (None,):
                entries, notes = pipeline_of(settings, reconciler, environment)
                pipeline += [e for e in entries if e not in pipeline]
                errors += [f"promotion: {note}" for note in notes]
        return render_status_page(
            rows,
            charts,
            now=now,
            refresh_seconds=refresh_seconds,
            errors=errors,
            graphs=graphs,
            graph_notes=graph_notes,
            pipeline=pipeline,
        )

    return render
