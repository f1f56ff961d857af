"""Run one analysis of a canary step: load test, then Prometheus checks, then the judge, then
the KPI checks on the prediction log's outcomes.

The order matters: the load test sends the canary requests through its tag route, so the
metric checks and the judge that follow see enough canary traffic even at a 10% step. Every
gate returns a verdict, never raises for missing data: an unreachable Prometheus or a load
test that could not start is *inconclusive*, and the decision holds instead of guessing.

A graph member with ``graphTraffic.replay`` is load-tested with its regime's requests (the
replay file's rows, in order), and its checks and judge then read its own revision series,
which hold them, rather than the graph's step series
(:func:`~controller.gates.graph_traffic.judged_graph`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from controller.analysis_types import GateResult, LoadPlan, Verdict
from controller.errors import SluiceError
from controller.gates.graph_replay import replay_plan, replay_result
from controller.gates.graph_traffic import judged_graph
from controller.gates.judge import judge
from controller.gates.kpi_gates import judge_kpis, unjudged_kpis
from controller.gates.load_test import evaluate_load
from controller.gates.metrics_profile import MetricsProfile
from controller.gates.prometheus_checks import (
    evaluate_checks,
    revision_request_counts,
    revision_traffic,
)
from controller.gates.sequential_watch import GATE as WATCH_GATE
from controller.gates.sequential_watch import WatchConfig, WatchCounts, watch_verdict
from controller.gates.smoke import GATE as SMOKE_GATE
from controller.gates.smoke import SmokeConfig, evaluate_smoke
from controller.ports import (
    LiveRequestCounts,
    LoadGenerator,
    MetricsSource,
    RolloutRegistry,
    ServedOutcomes,
)
from controller.rollout.actions import Analyze, Smoke, Watch
from controller.rollout.gates_config import GatesConfig
from controller.rollout.observation import ReleaseObservation

__all__ = ["Analyzer"]

_log = logging.getLogger("sluice.rollout.analysis")
_PAYLOAD_ROWS = 100


@dataclass
class Analyzer:
    """The gates of an analysis, over a metrics source and a load generator (either optional:
    a gate without its backend is inconclusive, so a missing Prometheus never promotes)."""

    registry: RolloutRegistry
    metrics: MetricsSource | None
    load: LoadGenerator | None
    report_dir: Path | None = None
    sleep: Callable[[float], None] = time.sleep
    #: Where the watch reads each revision's answers live (the local router); None: from
    #: Prometheus, a scrape behind.
    counters: LiveRequestCounts | None = None
    #: Where the KPI checks read each revision's requests and outcomes: the prediction log of
    #: an environment, by its name (the local stack keeps one per environment). None, or None
    #: for it: KPI checks are inconclusive, so a canary with KPIs never passes without them.
    outcomes: Callable[[str], ServedOutcomes | None] | None = None
    _payloads: dict[tuple[str, int], list[dict[str, object]]] = field(default_factory=dict)

    def run(
        self,
        obs: ReleaseObservation,
        analysis: Analyze,
        gates: GatesConfig,
        now: float,
        *,
        watch: Callable[[], GateResult | None] | None = None,
        watch_period: float = 1.0,
    ) -> list[GateResult]:
        """Every configured gate's result for this look at the step.

        With ``watch``, the sequential watch keeps looking every ``watch_period`` while the
        load test runs (its requests reach the canary too): a watch that fails ends the
        analysis at once with that one result, and the load test is left to finish unread.
        """
        results: list[GateResult] = []
        # A member that replays its regime's requests is judged on them: the replay runs
        # whether or not the environment's own load test is on.
        if gates.load_test.enabled or _replays(obs):
            load = self._load_test(obs, analysis, gates, watch, watch_period)
            if load.gate == WATCH_GATE:
                return [load]
            results.append(load)
            self.sleep(gates.scrape_wait_seconds)
        results += self._metric_checks(obs, gates, now)
        if gates.judge_enabled:
            results.append(self._judge(obs, analysis, gates, now))
        results += self._kpis(obs, analysis, gates, now)
        return results

    def watch(
        self, obs: ReleaseObservation, action: Watch, config: WatchConfig, gates: GatesConfig,
        now: float,
    ) -> GateResult | None:  # fmt: skip
        """The sequential watch's verdict on the counters since the step's commit; None when
        they could not be read (no counters, no primary, a query error): the watch is then
        skipped, since a broken tool is the analyses' business. The live counters are read
        when there are some (and the release is not judged on a graph's traffic), else
        Prometheus."""
        revisions = self._revisions(obs)
        if revisions is None:
            return None
        canary, primary = revisions
        graph = judged_graph(obs.graph_traffic)
        # The live counters count every request to a revision; a graph member's watch reads
        # the graph's calls to it from Prometheus, as its analyses do (a replaying member is
        # judged on its own revisions' answers, which the counters hold).
        if self.counters is not None and graph is None:
            try:
                live = self.counters.request_counts(
                    obs.environment, obs.inference_service, action.since
                )
            except SluiceError as exc:
                _log.info("watch of %s skipped: %s", canary, exc.message)
                return None
            (n, e), (pn, pe) = (_answers(live.get(r, {}), gates.profile) for r in revisions)
            return watch_verdict(WatchCounts(n, e, pn, pe), config)
        if self.metrics is None:
            return None
        window = f"{max(1, math.ceil(now - action.since))}s"
        try:
            counts = [
                revision_request_counts(
                    self.metrics,
                    revision=revision,
                    namespace=obs.target.namespace,
                    configuration=obs.target.configuration,
                    interval=window,
                    profile=gates.profile,
                    graph=graph,
                    inference_service=obs.inference_service,
                )
                for revision in (canary, primary)
            ]
        except SluiceError as exc:
            _log.info("watch of %s skipped: %s", canary, exc.message)
            return None
        (n, e), (pn, pe) = counts
        return watch_verdict(WatchCounts(n, e, pn, pe), config)

    def smoke(
        self, obs: ReleaseObservation, action: Smoke, config: SmokeConfig, gates: GatesConfig
    ) -> GateResult:
        """Send the smoke to the new revision's tag route (weight 0) and judge what it saw."""
        route = obs.target.tagged("latest")
        if self.load is None or route is None or route.url is None:
            why = "no load generator" if self.load is None else "the new revision has no tag route"
            return GateResult(SMOKE_GATE, Verdict.ERROR, f"{SMOKE_GATE}: not run ({why})")
        assert obs.pin.version is not None
        rows = self._rows(obs.model, obs.pin.version)
        if not rows and obs.pin.previous_version is not None:
            rows = self._rows(obs.model, obs.pin.previous_version)
        if not rows:
            return GateResult(
                SMOKE_GATE,
                Verdict.INCONCLUSIVE,
                f"{SMOKE_GATE}: v{obs.pin.version} logged no input example to send",
            )
        report_dir = None
        if self.report_dir is not None:
            name = f"{obs.environment}-{obs.model}-v{obs.pin.version}-smoke"
            report_dir = self.report_dir / name
        load = gates.load_test
        plan = LoadPlan(
            url=route.url,
            model_name=obs.inference_service,
            protocol=load.protocol,
            payloads=tuple(rows),
            users=min(load.users, config.requests),
            spawn_rate=float(min(load.users, config.requests)),
            duration_seconds=config.timeout_seconds,
            report_dir=report_dir,
            max_requests=config.requests,
        )
        try:
            report = self.load.run(plan)
        except SluiceError as exc:  # Locust did not run: nothing learnt about the model
            return GateResult(SMOKE_GATE, Verdict.ERROR, f"{SMOKE_GATE}: {exc.message}")
        return evaluate_smoke(report, config)

    def _revisions(self, obs: ReleaseObservation) -> tuple[str, str] | None:
        canary = obs.target.latest_created
        primary = next(
            (t.revision for t in obs.target.traffic if not t.latest and t.revision != canary), None
        )
        return (canary, primary) if canary and primary else None

    def _load_test(
        self,
        obs: ReleaseObservation,
        analysis: Analyze,
        gates: GatesConfig,
        watch: Callable[[], GateResult | None] | None = None,
        watch_period: float = 1.0,
    ) -> GateResult:
        config = gates.load_test
        route = obs.target.tagged("latest")
        if self.load is None or route is None or route.url is None:
            why = "no load generator" if self.load is None else "the canary has no tag route"
            return GateResult("locust", Verdict.INCONCLUSIVE, f"locust: not run ({why})")
        assert obs.pin.version is not None
        report_dir = None
        if self.report_dir is not None:
            name = (
                f"{obs.environment}-{obs.model}-v{obs.pin.version}-{analysis.step}-{analysis.look}"
            )
            report_dir = self.report_dir / name
        replay = obs.graph_traffic.replay if obs.graph_traffic is not None else None
        if replay is not None:
            if obs.replay is None:  # observe reads the file with the configuration
                return GateResult("locust", Verdict.ERROR, "locust: replay payloads not read")
            plan = replay_plan(
                config,
                replay,
                obs.replay,
                url=route.url,
                model_name=obs.inference_service,
                report_dir=report_dir,
            )
        else:
            rows = self._rows(obs.model, obs.pin.version)
            if not rows and obs.pin.previous_version is not None:
                # Same model, same inputs: the primary's example serves when the canary
                # logged none.
                rows = self._rows(obs.model, obs.pin.previous_version)
            if not rows:
                return GateResult(
                    "locust",
                    Verdict.INCONCLUSIVE,
                    f"locust: v{obs.pin.version} logged no input example",
                )
            plan = config.load_plan(
                url=route.url,
                model_name=obs.inference_service,
                payloads=rows,
                report_dir=report_dir,
            )
        baseline = obs.target.tagged("prev")
        pool = ThreadPoolExecutor(max_workers=2)
        stopped = False
        try:
            canary_run = pool.submit(self.load.run, plan)
            if baseline is not None and baseline.url is not None:
                # The same load on the primary, at the same time: the metric checks and the
                # judge then compare two revisions under equal load, not a loaded canary
                # with an idle primary.
                base_dir = None if report_dir is None else report_dir / "primary"
                pool.submit(self.load.run, replace(plan, url=baseline.url, report_dir=base_dir))
            while watch is not None and not canary_run.done():
                wait([canary_run], timeout=watch_period)
                if not canary_run.done():
                    looked = watch()
                    if looked is not None and looked.verdict is Verdict.FAIL:
                        stopped = True
                        return looked
            try:
                report = canary_run.result()
            except SluiceError as exc:  # Locust did not run: nothing learnt about the model
                return GateResult("locust", Verdict.ERROR, f"locust: {exc.message}")
        finally:
            # Normally both runs end before the metrics are read; a canary the watch stopped
            # is rolled back at once, and its load test ends on its own.
            pool.shutdown(wait=not stopped)
        result = evaluate_load(report, config)
        if replay is not None and obs.replay is not None:
            return replay_result(result, obs.replay)
        return result

    def _rows(self, model: str, version: int) -> list[dict[str, object]]:
        key = (model, version)
        if key not in self._payloads:
            self._payloads[key] = self.registry.input_rows(model, version, _PAYLOAD_ROWS)
        return self._payloads[key]

    def _metric_checks(
        self, obs: ReleaseObservation, gates: GatesConfig, now: float
    ) -> list[GateResult]:
        if not gates.metrics:
            return []
        revisions = self._revisions(obs)
        if self.metrics is None or revisions is None:
            # No Prometheus is a broken tool (error); no primary yet is missing evidence.
            verdict = Verdict.ERROR if self.metrics is None else Verdict.INCONCLUSIVE
            why = "no Prometheus configured" if self.metrics is None else "no primary revision"
            return [
                GateResult(f"prometheus/{c.name}", verdict, f"{c.name}: {why}")
                for c in gates.metrics
            ]
        canary, primary = revisions
        return evaluate_checks(
            self.metrics,
            gates.metrics,
            canary_revision=canary,
            primary_revision=primary,
            namespace=obs.target.namespace,
            configuration=obs.target.configuration,
            inference_service=obs.inference_service,
            profile=gates.profile,
            # Both revisions over the step's life so far: the same stretch of time.
            max_window_seconds=_step_window(obs, now),
            graph=judged_graph(obs.graph_traffic),
        )

    def _judge(
        self, obs: ReleaseObservation, analysis: Analyze, gates: GatesConfig, now: float
    ) -> GateResult:
        concluded = _judge_passed_before(analysis, gates)
        if concluded is not None:
            return concluded
        revisions = self._revisions(obs)
        if self.metrics is None or revisions is None:
            return GateResult("judge", Verdict.INCONCLUSIVE, "judge: no metrics to compare")
        # Every look judges all the step's data so far: the sequential boundaries assume it.
        window = f"{_step_window(obs, now):.0f}s"
        canary, primary = revisions
        graph = judged_graph(obs.graph_traffic)
        try:
            traffic = [
                revision_traffic(
                    self.metrics,
                    revision=revision,
                    namespace=obs.target.namespace,
                    configuration=obs.target.configuration,
                    interval=window,
                    profile=gates.profile,
                    graph=graph,
                    inference_service=obs.inference_service,
                )
                for revision in (canary, primary)
            ]
        except SluiceError as exc:  # the metrics could not be read: a tool error
            return GateResult("judge", Verdict.ERROR, f"judge: {exc.message}")
        canary_traffic, primary_traffic = traffic
        if canary_traffic is None or primary_traffic is None:
            who = canary if canary_traffic is None else primary
            if graph is not None:
                who += f" from graph {graph.graph}"
            return GateResult("judge", Verdict.INCONCLUSIVE, f"judge: no requests to {who} yet")
        return judge(canary_traffic, primary_traffic, look=analysis.look, config=gates.judge)

    def _kpis(
        self, obs: ReleaseObservation, analysis: Analyze, gates: GatesConfig, now: float
    ) -> list[GateResult]:
        """Each KPI check on the requests the canary and the primary served since the step's
        commit, with their outcomes so far (the same stretch of time for both)."""
        if not gates.kpis:
            return []
        revisions = self._revisions(obs)
        outcomes = self.outcomes(obs.environment) if self.outcomes is not None else None
        if outcomes is None or revisions is None:
            return unjudged_kpis(gates.kpis, Verdict.INCONCLUSIVE, "no prediction log to read")
        canary, primary = revisions
        return judge_kpis(
            outcomes,
            gates.kpis,
            model=obs.model,
            canary_revision=canary,
            primary_revision=primary,
            since=now - _step_window(obs, now),
            now=now,
            look=analysis.look,
            judge=gates.judge,
        )


#: Appended to a judge's pass carried to a look past ``maxLooks``.
_CARRIED = " (concluded at an earlier look of this step)"


def _judge_passed_before(analysis: Analyze, gates: GatesConfig) -> GateResult | None:
    """The judge's pass at an earlier look of this step, for a look past ``maxLooks``: the
    sequential test stopped there with its answer, and another gate held the step (a load test
    one request short on a loaded machine). Judged again it could only say "all looks spent",
    and a good canary was aborted for a question already answered. None otherwise."""
    if analysis.look <= gates.judge.max_looks:
        return None
    for result in analysis.record.results:
        if result.gate == "judge" and result.verdict is Verdict.PASS:
            summary = result.summary.removesuffix(_CARRIED) + _CARRIED
            return GateResult("judge", Verdict.PASS, summary, result.values)
    return None


def _replays(obs: ReleaseObservation) -> bool:
    """The release is judged on a replay of its regime's requests (``graphTraffic.replay``)."""
    return obs.graph_traffic is not None and obs.graph_traffic.replay is not None


def _answers(by_code: Mapping[int, int], profile: MetricsProfile) -> tuple[int, int]:
    """(requests, errors) of one revision's answers by code: an error is what the profile's
    error matcher matches, on the code where it matches codes, else on its class (5xx)."""
    by_code_label = profile.is_error("500")
    requests = errors = 0
    for code, count in by_code.items():
        requests += count
        if profile.is_error(str(code) if by_code_label else f"{code // 100}xx"):
            errors += count
    return requests, errors


def _step_window(obs: ReleaseObservation, now: float) -> float:
    """Whole seconds of the step's life that surely follow its commit. A commit's time is
    recorded in whole seconds, so the commit may have come up to a second after it: a window
    reaching back to the recorded second would take in what the revision answered just before
    the step (the smoke's first, cold requests to a new canary, or the last step's load)."""
    return float(max(1, math.floor(now - obs.pin_changed_at - 1.0)))
