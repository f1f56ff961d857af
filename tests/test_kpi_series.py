"""`sluice serve`'s KPI series: each release's KPI checks per serving revision on /metrics,
counted as the canary's KPI gate counts them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from support.gitops_repo import commit_to_remote, seed_manifests
from support.gitrepo import GitRemote
from support.prediction_answers import answer

from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.errors import InputError
from controller.gates.kpi_policy import KpiCheck
from controller.gates.kpi_values import RevisionKpi, kpi_by_revision
from controller.local.processes import free_port
from controller.local.services import MlflowService
from controller.predictions import ServedOutcome
from controller.serve.kpi_series import KpiRelease, KpiSeries
from controller.testing import MemoryPredictionStore

CTR = KpiCheck.model_validate(
    {"name": "ctr", "outcome": "click", "kind": "rate", "direction": "higher", "margin": 0.01,
     "minSamples": 10, "outcomeDelay": 60}
)  # fmt: skip
REVENUE = KpiCheck.model_validate(
    {"name": "revenue", "outcome": "revenue", "kind": "mean", "direction": "higher",
     "margin": 0.05, "minSamples": 10, "outcomeDelay": 60, "missing": "skip"}
)  # fmt: skip
NOW = 10_000.0


def served(revision: str, when: float, value: float | str | None, rid: str = "") -> ServedOutcome:
    return ServedOutcome(rid or f"{revision}-{when}", revision, when, value)


def test_a_rate_per_revision_counts_settled_requests_and_missing_clicks_as_none() -> None:
    """Requests younger than outcomeDelay are not counted yet; older ones without a click are
    a 0 (missing: zero), as the gate counts them."""
    rows = [
        served("r2", NOW - 100, 1),
        served("r1", NOW - 200, 1),
        served("r1", NOW - 150, None),
        served("r1", NOW - 90, 0),
        served("r1", NOW - 30, 1),  # younger than the 60 s delay: not yet
        served("r2", NOW - 10, None),  # not yet
    ]
    assert kpi_by_revision(CTR, rows, now=NOW) == [
        RevisionKpi("r2", 1.0, 1),
        RevisionKpi("r1", pytest.approx(1 / 3), 3),
    ]


def test_a_mean_skips_missing_values_and_a_revision_with_none_counted_has_no_value() -> None:
    rows = [
        served("r1", NOW - 100, 10.0),
        served("r1", NOW - 100, None),
        served("r1", NOW - 90, 20.0),
        served("r2", NOW - 10, 5.0),
    ]
    assert kpi_by_revision(REVENUE, rows, now=NOW) == [
        RevisionKpi("r1", 15.0, 2),
        RevisionKpi("r2", None, 0),
    ]


def test_a_class_name_outcome_is_the_policys_mistake_naming_the_request() -> None:
    with pytest.raises(InputError, match=r"outcome click of request q7 is 'yes', a class name"):
        kpi_by_revision(CTR, [served("r1", NOW - 100, "yes", rid="q7")], now=NOW)


def _log_with_two_revisions() -> MemoryPredictionStore:
    log = MemoryPredictionStore()
    for i in range(10):
        log.record(answer(f"a{i}", model="rec", revision="rec-00001", when=NOW - 400 + i))
        log.record(answer(f"b{i}", model="rec", revision="rec-00002", when=NOW - 300 + i))
    log.record(answer("other", model="fraud", revision="fraud-00001", when=NOW - 300))
    assert log.flush()
    clicks = [(f"a{i}", "click", 1 if i < 4 else 0) for i in range(10)]
    clicks += [(f"b{i}", "click", 1) for i in range(2)]  # b2..b9: no click (missing: zero)
    log.record_outcomes(clicks)
    return log


def test_the_series_export_each_revisions_kpi_and_its_requests() -> None:
    log = _log_with_two_revisions()
    series = KpiSeries(
        lambda: [KpiRelease("local", "rec", (CTR,)), KpiRelease("local", "fraud", ())],
        lambda _env: log,
        window=900,
        clock=lambda: NOW,
    )
    registry = CollectorRegistry()
    registry.register(series)
    series.refresh()
    text = generate_latest(registry).decode()
    labels = 'environment="local",kpi="ctr",model="rec",outcome="click"'
    assert f'sluice_kpi{{{labels},revision="rec-00001"}} 0.4' in text
    assert f'sluice_kpi{{{labels},revision="rec-00002"}} 0.2' in text
    assert f'sluice_kpi_requests{{{labels},revision="rec-00001"}} 10.0' in text
    assert 'model="fraud"' not in text  # no KPI checks: no series


def test_the_window_ends_at_the_outcome_delay_and_reaches_back_window_seconds() -> None:
    """Requests count from window + outcomeDelay ago: with a 200 s window (and the 60 s
    delay) neither revision's requests (400 and 300 s old) count; with 250 s, rec-00002's."""
    log = _log_with_two_revisions()
    series = KpiSeries(
        lambda: [KpiRelease("local", "rec", (CTR,))],
        lambda _env: log,
        window=200,
        clock=lambda: NOW,
    )
    series.refresh()
    assert next(iter(series.collect())).samples == []
    series.window = 250
    series.refresh()
    (value, _requests) = series.collect()
    assert [(s.labels["revision"], s.value) for s in value.samples] == [("rec-00002", 0.2)]


def test_a_policy_whose_outcome_is_a_class_name_loses_only_that_checks_series(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = _log_with_two_revisions()
    log.record_outcomes([("a0", "segment", "bargain")])
    segment = CTR.model_copy(update={"name": "by-segment", "outcome": "segment"})
    series = KpiSeries(
        lambda: [KpiRelease("local", "rec", (segment, CTR))],
        lambda _env: log,
        window=900,
        clock=lambda: NOW,
    )
    series.refresh()
    series.refresh()
    (value, _requests) = series.collect()
    assert {s.labels["kpi"] for s in value.samples} == {"ctr"}
    warnings = [r.getMessage() for r in caplog.records if "by-segment" in r.getMessage()]
    assert warnings == ["KPI by-segment of rec: outcome segment of request a0 is 'bargain', "
                        "a class name: a KPI counts numbers (send 0/1 or a value)"]  # fmt: skip


KPI_POLICY = """    kpis:
      - {name: ctr, outcome: click, kind: rate, direction: higher, margin: 0.03,
         minSamples: 40, outcomeDelay: 5}
"""


@pytest.mark.slow
def test_sluice_serve_as_the_readme_runs_it_exports_the_champions_ctr_per_revision(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """`sluice serve --forge local --env local` from a checkout, every setting at its default
    but the registry and the remote: once the local runtime's prediction log under `.sluice/`
    appears, with a model's answers and clicks, and the environment's policy has a ctr check,
    /metrics shows the CTR of each revision that served, with how many requests it counted."""
    model = f"kpis-{uuid.uuid4().hex[:8]}"
    seed_manifests(git_remote, tmp_path / "seed", model=model)

    def add_kpis(tree: Path) -> None:
        path = tree / "manifests/overlays/local/sluice.yaml"
        text = path.read_text()
        assert "\n  gates:\n" in text
        path.write_text(text.replace("\n  gates:\n", f"\n  gates:\n{KPI_POLICY}", 1))

    commit_to_remote(git_remote, tmp_path / "edit", "ctr check", add_kpis)
    shutil.rmtree(tmp_path / "edit")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("sluice")), "serve", "--forge", "local", "--env",
         "local", "--port", str(port)],
        cwd=checkout,
        env=env | {"MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
                   "SLUICE_GIT_REMOTE": git_remote.url},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # serve is up, and has read no log yet
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        # The local runtime creates its log with its first router, after serve has started.
        log_path = checkout / ".sluice" / "local" / "predictions.sqlite"
        log_path.parent.mkdir(parents=True)
        now = time.time()
        with SqlitePredictionLog(log_path) as log:
            for i in range(20):
                log.record(answer(f"q{i}", model=model, revision=f"{model}-predictor-00002",
                                  when=now - 120 + i))  # fmt: skip
            assert log.flush()
            log.record_outcomes([(f"q{i}", "click", 1 if i % 4 == 0 else 0) for i in range(20)])
        labels = f'environment="local",kpi="ctr",model="{model}",outcome="click"'
        revision = f'revision="{model}-predictor-00002"'
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline and f"sluice_kpi{{{labels},{revision}}}" not in text:
            time.sleep(0.3)
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.ConnectionError:
                continue
        assert f"sluice_kpi{{{labels},{revision}}} 0.25" in text, text[-3000:]
        assert f"sluice_kpi_requests{{{labels},{revision}}} 20.0" in text
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output


class _CountsOnly:
    """A store whose rows cannot be read: a rate's series must come from its counts."""

    def __init__(self, inner: MemoryPredictionStore) -> None:
        self.inner = inner

    def served_revisions(self, model: str, since: float) -> list[str]:
        return self.inner.served_revisions(model, since)

    def outcome_counts(self, *args: Any) -> Any:
        return self.inner.outcome_counts(*args)

    def served_outcomes(self, *args: Any) -> list[ServedOutcome]:
        raise AssertionError("a rate's series read every row")


def test_a_rates_series_is_counted_in_the_store_as_the_gate_counts_it() -> None:
    """At 200 rps a 15-minute window holds 180,000 answers: a rate's series asks the store for
    its counts per revision (one aggregating query), and gets what the rows would give."""
    rows_log = _log_with_two_revisions()
    counts_log = _CountsOnly(rows_log)
    values = {}
    for name, log in (("rows", rows_log), ("counts", counts_log)):
        series = KpiSeries(
            lambda: [KpiRelease("local", "rec", (CTR,))],
            lambda _env, log=log: log,
            window=900,
            clock=lambda: NOW,
        )
        series.refresh()
        values[name] = sorted(
            (s.name, s.labels["revision"], s.value) for m in series.collect() for s in m.samples
        )
    assert values["counts"] == values["rows"]
    assert ("sluice_kpi", "rec-00001", 0.4) in values["counts"]


def test_a_rate_whose_window_holds_a_class_name_is_read_as_rows_naming_the_request() -> None:
    log = _log_with_two_revisions()
    log.record_outcomes([("b5", "click", "yes")])
    series = KpiSeries(
        lambda: [KpiRelease("local", "rec", (CTR,))], lambda _env: log, window=900,
        clock=lambda: NOW,
    )  # fmt: skip
    series.refresh()
    assert next(iter(series.collect())).samples == []  # no series for a check it cannot count
