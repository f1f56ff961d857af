"""`sluice graph rollout`'s rules, on plain values and in-memory fakes of its ports.

The decision (:mod:`controller.rollout.graph_decide`) is pure: tested on observations. The
passes (:mod:`controller.rollout.graph_reconcile`) run on an in-memory Git remote
(:class:`~controller.testing.MemoryReleaseRepository`), a target that serves what the branch
holds once asked to sync, a Prometheus answering the branch series' queries from numbers the
test sets, and a clock the test moves: no process, no waiting. The market-regime example's
environment is the `local` one, its graph in canary form at 10 %.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.gitops_repo import ROOT, manifest_files
from support.gitrepo import GitRemote

from controller.analysis_types import GateResult, MetricSample, Verdict
from controller.backends.git_lease import GitLeaseStore
from controller.backends.git_repo import GitWorkspace
from controller.errors import (
    ConfigError,
    GitConflict,
    InputError,
    MetricsUnavailable,
    RemoteUnavailable,
)
from controller.gates.metrics_profile import KNATIVE_OPENCENSUS, KNATIVE_OTEL
from controller.gates.prometheus_checks import MetricCheck
from controller.lease import Lease, LeaseKeeper, graph_lease_name, lease_name
from controller.manifests.environment import parse_environment
from controller.manifests.graph_canary import (
    GraphCanary,
    canary_form,
    canary_state,
    with_canary_weight,
)
from controller.manifests.graph_file import dump_graph, load_graph
from controller.rollout.actions import (
    Analyze,
    Finish,
    Hold,
    Outcome,
    Promote,
    SetWeight,
    StartRollback,
    Wait,
)
from controller.rollout.gates_config import GatesConfig
from controller.rollout.graph_analysis import analyse_graph
from controller.rollout.graph_decide import GraphObservation, conclude_graph, decide_graph
from controller.rollout.graph_policy import GraphRolloutPolicy, graph_checks, next_graph_step
from controller.rollout.graph_reconcile import GraphRollout
from controller.rollout.record import AnalysisRecord
from controller.testing import ManualClock, MemoryLeaseStore, MemoryReleaseRepository
from controller.text.ref_names import validate_model_name

OVERLAY = "manifests/overlays/local"
GRAPH_FILE = f"{OVERLAY}/inference-graph.yaml"
EXAMPLE = ROOT / "models/market_regime/overlay"
GRAPH = "market-regime"
T0 = 1_700_000_000.0
POLICY = GraphRolloutPolicy()


# -- the decision -----------------------------------------------------------------------------


def observed(**fields: Any) -> GraphObservation:
    values: dict[str, Any] = {
        "graph": GRAPH, "environment": "local", "canary": GraphCanary("d1", 10),
        "commit": "c" * 40, "changed_at": T0, "served": True,
    }  # fmt: skip
    return GraphObservation(**(values | fields))


def passed(*names: str) -> tuple[GateResult, ...]:
    return tuple(GateResult(f"prometheus/{n}", Verdict.PASS, f"{n} fine") for n in names)


def test_a_graph_without_a_canary_ends_as_its_last_commit_says() -> None:
    for trailer, outcome in (
        ("graph-promote", Outcome.PROMOTED),
        ("graph-rollback", Outcome.ROLLED_BACK),
        (None, Outcome.IDLE),
    ):
        action = decide_graph(observed(canary=None, last_action=trailer), POLICY, T0)
        assert isinstance(action, Finish)
        assert action.outcome is outcome
    idle = decide_graph(observed(canary=None), POLICY, T0)
    assert "sluice graph propose market-regime --env local" in idle.reason  # type: ignore[union-attr]


def test_a_step_not_served_yet_waits_then_rolls_back_past_the_deadline() -> None:
    waiting = observed(served=False, serving_note="local serves no canary, not canary d1 yet")
    assert decide_graph(waiting, POLICY, T0 + 10) == Wait(
        "local serves no canary, not canary d1 yet", "progressing"
    )
    late = decide_graph(waiting, POLICY, T0 + POLICY.progress_deadline_seconds + 1)
    assert isinstance(late, StartRollback)
    assert late.verdict == "aborted"
    assert late.reason.startswith("the canary at 10% was not served within 600 s")


def test_an_analysis_is_due_an_interval_after_the_step_or_the_last_analysis() -> None:
    early = decide_graph(observed(), POLICY, T0 + 10)
    assert isinstance(early, Wait)
    assert early.retry_after == pytest.approx(20)
    due = decide_graph(observed(), POLICY, T0 + 30)
    assert due == Analyze(step=10, look=1, record=AnalysisRecord(commit="c" * 40, step=10))
    held = AnalysisRecord(commit="c" * 40, step=10, looks=1, inconclusive=1, last_at=T0 + 31)
    assert isinstance(decide_graph(observed(), POLICY, T0 + 40, held), Wait)
    assert decide_graph(observed(), POLICY, T0 + 61, held) == Analyze(10, 2, held)
    # A record of another commit (the step before) counts nothing here.
    other = AnalysisRecord(commit="b" * 40, step=10, looks=3, inconclusive=3, last_at=T0 + 50)
    assert decide_graph(observed(), POLICY, T0 + 30, other) == due


def test_only_passing_analyses_step_in_order_and_the_last_step_promotes() -> None:
    results = passed("request-success-rate", "request-latency")
    first = Analyze(10, 1, AnalysisRecord("c", 10))
    assert conclude_graph(POLICY, first, results, T0) == SetWeight(10, 50, results)
    last = Analyze(50, 1, AnalysisRecord("c", 50))
    assert conclude_graph(POLICY, last, results, T0) == Promote(50, results)
    # A canary merged between steps goes to the next one above it; never past one.
    assert [next_graph_step((10, 50), w) for w in (1, 10, 30, 50, 80)] == [10, 50, 50, 100, 100]


def test_a_failure_rolls_back_and_missing_evidence_holds_until_its_limit() -> None:
    failing = (
        GateResult("prometheus/request-success-rate", Verdict.FAIL, "success 80% (min 99%)"),
        *passed("request-latency"),
    )
    back = conclude_graph(POLICY, Analyze(10, 1, AnalysisRecord("c", 10)), failing, T0)
    assert back == StartRollback("success 80% (min 99%)", failing)
    few = (GateResult("prometheus/x", Verdict.INCONCLUSIVE, "only 3 requests to stable"),)
    record = AnalysisRecord("c", 10)
    for look in range(1, POLICY.inconclusive_limit):
        held = conclude_graph(POLICY, Analyze(10, look, record), few, T0 + look)
        assert isinstance(held, Hold)
        record = held.record
    aborted = conclude_graph(POLICY, Analyze(10, 5, record), few, T0 + 5)
    assert isinstance(aborted, StartRollback)
    assert aborted.verdict == "aborted"
    assert aborted.reason == "no answer from 5 analyses in a row (only 3 requests to stable)"


# -- the policy -------------------------------------------------------------------------------


def test_the_policy_defaults_to_flaggers_and_the_model_releases_checks() -> None:
    assert POLICY.steps == (10, 50)
    checks = graph_checks(POLICY, GatesConfig())
    assert [(c.name, c.min, c.max, c.max_increase) for c in checks] == [
        ("request-success-rate", 99.0, None, None),
        ("request-latency", None, 500.0, 0.5),
    ]
    assert {c.min_requests for c in checks} == {50}
    custom = GatesConfig.model_validate(
        {"metrics": [{"name": "mine", "query": "sum(x)", "max": 1}]}
    )
    assert [c.name for c in graph_checks(POLICY, custom)] == [  # only builtin ones apply
        "request-success-rate",
        "request-latency",
    ]


def environment(graph_rollout: str) -> str:
    return (
        "apiVersion: sluice.dev/v1alpha1\nkind: Environment\nname: local\n"
        "storage: {allowedSchemes: [file]}\nreleases: []\n" + graph_rollout
    )


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("graphRollout: {steps: [50, 100]}", "steps must be strictly ascending weights in 1..99"),
        ("graphRollout: {steps: [50, 10]}", "steps must be strictly ascending weights in 1..99"),
        ("graphRollout: {interval: 0}", "graphRollout.interval"),
        (
            "graphRollout: {metrics: [{name: mine, query: 'sum(x)', max: 1}]}",
            "check mine has a query of its own",
        ),
        ("graphRollout: {stepz: [10]}", "graphRollout.stepz"),
    ],
)
def test_a_bad_graph_policy_is_one_line_naming_the_file_and_the_field(
    block: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_environment(environment(block), source="sluice.yaml", environment="local")
    assert "\n" not in raised.value.message
    assert raised.value.message.startswith("sluice.yaml")
    assert message in raised.value.message


def test_the_example_environments_set_the_local_clock() -> None:
    for path in (EXAMPLE / "sluice.yaml", ROOT / OVERLAY / "sluice.yaml"):
        config = parse_environment(path.read_text(), source=str(path), environment="local")
        assert config.graph_rollout.steps == (50,)
        assert config.graph_rollout.interval_seconds == 5


# -- the branch checks ------------------------------------------------------------------------

_STEP = re.compile(r'step_name="([^"]+)"')


@dataclass
class BranchMetrics:
    """Prometheus answering the builtin checks' queries of the branch series: per branch,
    requests, 5xx errors and a latency (ms) set by the test; an ``outage`` fails every query."""

    branches: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    outage: bool = False
    queries: list[str] = field(default_factory=list)
    on_query: Callable[[], None] = lambda: None

    def query(self, promql: str) -> list[MetricSample]:
        self.queries.append(promql)
        self.on_query()
        if self.outage:
            raise MetricsUnavailable("Prometheus at http://prometheus.test is unreachable")
        if "sluice_graph_branch" not in promql:
            return []
        branch = _STEP.search(promql)
        if branch is None or branch.group(1) not in self.branches:
            return []
        requests, errors, latency = self.branches[branch.group(1)]
        if promql.startswith("histogram_quantile("):
            return [MetricSample({}, latency)]
        if "or vector(0)" in promql:
            return [MetricSample({}, 100.0 * (requests - errors) / requests)]
        if promql.startswith("sum(increase("):
            five_xx = '=~"5.."' in promql or '=~"5xx"' in promql
            return [MetricSample({}, float(errors if five_xx else requests))]
        return []


def test_the_checks_read_each_branch_of_the_root_splitter_under_the_profiles_names() -> None:
    metrics = BranchMetrics({"canary": (200, 0, 40.0), "stable": (1800, 0, 38.0)})
    checks = graph_checks(POLICY, GatesConfig())
    results = analyse_graph(
        metrics, checks, graph=GRAPH, namespace="models-local", profile=KNATIVE_OTEL,
        window_seconds=29,
    )  # fmt: skip
    assert [(r.gate, r.verdict) for r in results] == [
        ("prometheus/request-success-rate", Verdict.PASS),
        ("prometheus/request-latency", Verdict.PASS),
    ]
    assert results[1].summary == (
        "request-latency p99 40 ms (max 500 ms, max +50% vs stable) vs stable 38 ms"
    )
    counted = (
        "sum(increase(sluice_graph_branch_duration_seconds_count{"
        'k8s_namespace_name="models-local", graph_name="market-regime", node_name="root", '
        'step_name="canary", '
        'target_node="canary"}[29s]))'
    )
    assert counted in metrics.queries
    metrics.queries.clear()
    analyse_graph(
        metrics, checks, graph=GRAPH, namespace="models-local", profile=KNATIVE_OPENCENSUS,
        window_seconds=29,
    )  # fmt: skip
    assert any(
        'sluice_graph_branch_request_latencies_count{namespace_name="models-local"' in q
        and 'step_name="stable", target_node="stable"' in q
        for q in metrics.queries
    )


def test_too_few_requests_on_either_branch_or_no_prometheus_never_pass() -> None:
    checks = graph_checks(POLICY, GatesConfig())
    few_stable = BranchMetrics({"canary": (200, 0, 40.0), "stable": (7, 0, 38.0)})
    results = analyse_graph(
        few_stable, checks, graph=GRAPH, namespace="models-local", profile=KNATIVE_OTEL,
        window_seconds=29,
    )  # fmt: skip
    # The success-rate check's threshold is absolute, and still needs the stable branch.
    assert [r.verdict for r in results] == [Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE]
    assert results[0].summary == (
        "request-success-rate: only 7 requests to stable over 29s in graph market-regime's root "
        "Splitter (minRequests 50) (the stable branch)"
    )
    few_canary = BranchMetrics({"canary": (3, 3, 40.0), "stable": (900, 0, 38.0)})
    results = analyse_graph(
        few_canary, checks, graph=GRAPH, namespace="models-local", profile=KNATIVE_OTEL,
        window_seconds=29,
    )  # fmt: skip
    assert {r.verdict for r in results} == {Verdict.INCONCLUSIVE}  # 3 of 3 failed: not enough
    down = BranchMetrics(outage=True)
    results = analyse_graph(
        down, checks, graph=GRAPH, namespace="models-local", profile=KNATIVE_OTEL,
        window_seconds=29,
    )  # fmt: skip
    assert {r.verdict for r in results} == {Verdict.ERROR}
    results = analyse_graph(
        None, checks, graph=GRAPH, namespace="models-local", profile=KNATIVE_OTEL,
        window_seconds=29,
    )  # fmt: skip
    assert {(r.verdict, r.summary.split(": ")[1]) for r in results} == {
        (Verdict.ERROR, "no Prometheus configured")
    }


# -- the passes, on in-memory ports -----------------------------------------------------------


def example_graph() -> Any:
    return load_graph((EXAMPLE / "inference-graph.yaml").read_text(), source="example")


def proposed_graph() -> Any:
    new = example_graph()
    new["spec"]["nodes"]["blend-inputs"]["steps"].pop()  # the blend without the volatile's view
    return new


@dataclass
class ServedGraphs:
    """The target: serves the graph as the branch held it when last asked to sync (a
    :class:`~controller.ports.GraphInventory` and :class:`~controller.ports.SyncTrigger`),
    Ready, in namespace models-local."""

    workspace: MemoryReleaseRepository
    serving: Mapping[str, Any] | None = None
    syncs: int = 0
    #: It cannot be asked, as a runtime that is not running.
    down: bool = False

    def __post_init__(self) -> None:
        self.request_sync("local")

    def request_sync(self, environment: str) -> None:
        self.syncs += 1
        text = self.workspace.remote.files("main")[GRAPH_FILE]
        document = load_graph(text, source="served")
        document["metadata"]["namespace"] = "models-local"
        document["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        self.serving = document

    def inference_graphs(self, environment: str) -> list[Mapping[str, Any]]:
        if self.down:
            raise RemoteUnavailable("no local runtime is running; start it: sluice local up")
        return [self.serving] if self.serving is not None else []


@dataclass
class Walk:
    clock: ManualClock
    workspace: MemoryReleaseRepository
    target: ServedGraphs
    metrics: BranchMetrics
    rollout: GraphRollout

    def again(self) -> GraphRollout:
        """Another process: a new rollout on a new clone, nothing remembered."""
        return GraphRollout(
            self.workspace.clone(), self.target, self.metrics, clock=self.clock,
            sleep=self.clock.sleep,
        )  # fmt: skip

    def graph(self) -> Any:
        return load_graph(self.workspace.remote.files("main")[GRAPH_FILE], source="main")

    def subjects(self) -> list[str]:
        return [c.subject for c in self.workspace.remote.log("main")]

    def message(self) -> str:
        return self.workspace.remote.log("main")[0].message


@pytest.fixture
def walk() -> Walk:
    clock = ManualClock(T0)
    files = {k: v for k, v in manifest_files().items() if not k.startswith(f"{OVERLAY}/")}
    files |= {f"{OVERLAY}/{p.name}": p.read_text() for p in EXAMPLE.iterdir() if p.is_file()}
    files[GRAPH_FILE] = dump_graph(canary_form(example_graph(), proposed_graph(), 10))
    workspace = MemoryReleaseRepository(files, clock=clock)
    target = ServedGraphs(workspace)
    metrics = BranchMetrics({"canary": (120, 0, 41.0), "stable": (1080, 0, 40.0)})
    rollout = GraphRollout(workspace, target, metrics, clock=clock, sleep=clock.sleep)
    return Walk(clock, workspace, target, metrics, rollout)


def test_a_healthy_canary_walks_its_steps_to_the_promotion_by_commits(walk: Walk) -> None:
    seen = []
    last = walk.rollout.run("local", GRAPH, poll_seconds=1, on_pass=seen.append)
    assert last.outcome is Outcome.PROMOTED
    assert walk.subjects() == [
        "graph market-regime: promoted (local)",
        "graph market-regime: canary 50% (local)",
        "Initial commit",
    ]
    assert walk.graph()["spec"] == proposed_graph()["spec"]
    assert canary_state(walk.graph()) is None
    body = walk.message()
    assert "- [pass] prometheus/request-success-rate: request-success-rate 100% (min 99%) vs " in (
        body
    )
    assert "stable 100%" in body
    assert "Sluice-Action: graph-promote" in body
    # Each step was judged an interval (5 s here) after its commit, once served.
    actions = [r.action for r in seen]
    assert actions.count("step") == 1
    assert actions.count("promote") == 1
    assert walk.target.syncs == 3  # asked after each commit


def test_a_failing_canary_branch_is_rolled_back_by_a_commit_naming_the_check(walk: Walk) -> None:
    walk.metrics.branches["canary"] = (120, 36, 41.0)  # 30 % answered 500
    last = walk.rollout.run("local", GRAPH, poll_seconds=1)
    assert last.outcome is Outcome.ROLLED_BACK
    body = walk.message()
    subject = body.partition("\n")[0]
    assert subject.startswith("rollback graph market-regime: request-success-rate 70% (min 99%")
    assert len(subject) <= 64  # Argo CD's; the body has the whole reason
    assert "request-success-rate 70% (min 99%) vs stable 100%: below min 99%\n" in body
    assert "- [FAIL] prometheus/request-success-rate: " in body
    assert walk.graph() == example_graph()  # the old graph alone, exactly as it was


def test_too_few_requests_hold_and_never_pass_then_roll_back_at_the_limit(walk: Walk) -> None:
    walk.metrics.branches["stable"] = (5, 0, 40.0)
    reports = []
    last = walk.rollout.run("local", GRAPH, poll_seconds=1, on_pass=reports.append)
    assert last.outcome is Outcome.ROLLED_BACK
    assert [r.action for r in reports if r.action in ("hold", "step", "promote")] == ["hold"] * 4
    assert walk.subjects()[1] == "Initial commit"  # no step was ever committed
    assert "no answer from 5 analyses in a row" in walk.message()  # inconclusiveLimit's default
    assert "only 5 requests to stable" in walk.message()


def test_an_unreachable_prometheus_holds_then_rolls_back_after_the_error_limit(
    walk: Walk,
) -> None:
    walk.metrics.outage = True
    last = walk.rollout.run("local", GRAPH, poll_seconds=1)
    assert last.outcome is Outcome.ROLLED_BACK
    assert walk.subjects()[1] == "Initial commit"
    assert "a gate could not run in 4 analyses in a row" in walk.message()
    assert "unreachable" in walk.message()


def test_the_walk_resumes_from_git_in_another_process(walk: Walk) -> None:
    walk.clock.advance(6)
    stepped = walk.rollout.reconcile("local", GRAPH)
    assert stepped.action == "step"
    # The process dies; another one, remembering nothing, takes it from Git.
    last = walk.again().run("local", GRAPH, poll_seconds=1)
    assert last.outcome is Outcome.PROMOTED
    assert walk.subjects()[:2] == [
        "graph market-regime: promoted (local)",
        "graph market-regime: canary 50% (local)",
    ]


def test_a_graph_changed_while_it_was_judged_is_a_conflict_and_nothing_is_committed(
    walk: Walk,
) -> None:
    by_hand = dump_graph(with_canary_weight(walk.graph(), 30))

    def someone_steps_it() -> None:
        walk.metrics.on_query = lambda: None
        walk.workspace.remote.commit("main", {GRAPH_FILE: by_hand}, "graph by hand: 30%")

    walk.metrics.on_query = someone_steps_it
    walk.clock.advance(6)
    with pytest.raises(GitConflict, match="changed since it was judged"):
        walk.rollout.reconcile("local", GRAPH)
    assert walk.subjects()[0] == "graph by hand: 30%"
    walk.target.request_sync("local")
    # The next passes judge the step as it is now, from its own commit.
    last = walk.rollout.run("local", GRAPH, poll_seconds=1)
    assert last.outcome is Outcome.PROMOTED
    assert walk.subjects()[1:3] == ["graph market-regime: canary 50% (local)", "graph by hand: 30%"]


def test_nothing_is_judged_before_the_target_serves_the_committed_step(walk: Walk) -> None:
    walk.target.serving = None
    walk.clock.advance(60)
    report = walk.rollout.reconcile("local", GRAPH)
    assert report.action == "wait"
    assert report.detail == "local does not serve InferenceGraph market-regime yet"
    assert walk.metrics.queries == []


def test_a_check_of_its_own_cannot_judge_branches() -> None:
    with pytest.raises(ValueError, match="builtin checks only"):
        GraphRolloutPolicy(metrics=(MetricCheck(name="mine", query="sum(x)", max=1),))


def test_a_target_that_cannot_be_asked_is_retried_and_never_rolls_back(walk: Walk) -> None:
    walk.target.down = True
    walk.clock.advance(POLICY.progress_deadline_seconds + 60)  # long after the step's commit
    with pytest.raises(RemoteUnavailable):
        walk.rollout.reconcile("local", GRAPH)
    reports = []

    def back_up(report: Any) -> None:
        reports.append(report)
        walk.target.down = False

    last = walk.rollout.run("local", GRAPH, poll_seconds=1, on_pass=back_up)
    assert reports[0].action == "retry"
    assert reports[0].detail.startswith("no local runtime is running")
    assert last.outcome is Outcome.PROMOTED


# -- the lease: one walker acts per graph -----------------------------------------------------

LEASE = graph_lease_name("local", GRAPH)


def walker(walk: Walk, store: MemoryLeaseStore, holder: str) -> GraphRollout:
    """A walker of its own process (its own clone), keeping its lease in the shared store:
    30 s long, renewed every 10 s."""
    rollout = walk.again()
    rollout.lease = LeaseKeeper(store, holder, duration_seconds=30, clock=walk.clock)
    return rollout


def test_a_graphs_lease_is_named_apart_from_every_releases() -> None:
    assert LEASE == "local/-graph-market-regime"
    # A model named as the graph, or as its proposal branches, has a lease of its own ...
    assert LEASE not in {lease_name("local", GRAPH), lease_name("local", "graph-" + GRAPH)}
    # ... and none may be named as the graph's lease: a model's name cannot begin with '-'.
    with pytest.raises(InputError, match="starts with '-'"):
        validate_model_name("-graph-" + GRAPH)


def test_two_walkers_of_one_graph_one_analyses_and_commits_the_other_says_who(
    walk: Walk,
) -> None:
    store = MemoryLeaseStore()
    a, b = walker(walk, store, "walker-a"), walker(walk, store, "walker-b")
    # Before anything is due, neither needs the lease: both wait.
    assert [a.reconcile("local", GRAPH).action, b.reconcile("local", GRAPH).action] == [
        "wait",
        "wait",
    ]
    assert store.swaps == []
    walk.clock.advance(6)
    stepped = a.reconcile("local", GRAPH)
    assert stepped.action == "step"
    queries = len(walk.metrics.queries)
    walk.clock.advance(6)  # the 50 % step is due for its analysis, for either walker
    followed = b.reconcile("local", GRAPH)
    assert (followed.action, followed.phase, followed.weight) == ("follow", "analysing", 50)
    assert followed.holder == "walker-a"
    assert followed.lease_until == T0 + 6 + 30  # taken at the step, not renewed since
    assert followed.detail.startswith("walker-a holds this graph's lease (until ")
    assert followed.detail.endswith("unless renewed): it analyses and commits, this walker follows")
    assert followed.as_dict()["holder"] == "walker-a"
    assert (followed.commit, followed.finished) == (None, False)
    assert len(walk.metrics.queries) == queries  # b analysed nothing
    assert walk.subjects()[0] == "graph market-regime: canary 50% (local)"
    # a renews it (more than 10 s since it took it) and promotes; b, following, sees the end.
    walk.clock.advance(5)
    assert a.reconcile("local", GRAPH).action == "promote"
    assert store.swaps == [(LEASE, "walker-a"), (LEASE, "walker-a")]
    assert b.reconcile("local", GRAPH).outcome is Outcome.PROMOTED
    assert a.reconcile("local", GRAPH).outcome is Outcome.PROMOTED
    assert store.read(LEASE) is None  # released at the end
    assert store.swaps[-1] == (LEASE, None)
    assert walk.subjects()[:3] == [
        "graph market-regime: promoted (local)",
        "graph market-regime: canary 50% (local)",
        "Initial commit",
    ]


def test_a_lease_lost_while_analysing_leaves_the_commit_to_its_new_holder(walk: Walk) -> None:
    """a's analysis outlasts its lease (nothing renews it meanwhile) and b takes the lease
    over: a commits nothing and follows; b judges the step itself and walks it."""
    store = MemoryLeaseStore()
    a, b = walker(walk, store, "walker-a"), walker(walk, store, "walker-b")
    taken_by_b = LeaseKeeper(store, "walker-b", duration_seconds=30, clock=walk.clock)

    def a_long_analysis() -> None:
        walk.metrics.on_query = lambda: None
        walk.clock.advance(31)  # a's lease expired
        assert taken_by_b.hold(LEASE).holder == "walker-b"  # b's pass took it over

    walk.metrics.on_query = a_long_analysis
    walk.clock.advance(6)
    lost = a.reconcile("local", GRAPH)
    assert (lost.action, lost.holder, lost.commit) == ("follow", "walker-b", None)
    assert walk.subjects() == ["Initial commit"]  # a's passing analysis stepped nothing
    assert not a.records  # nor is a's count of the step's analyses kept
    last = b.run("local", GRAPH, poll_seconds=1)
    assert last.outcome is Outcome.PROMOTED
    assert walk.subjects()[1] == "graph market-regime: canary 50% (local)"
    assert store.read(LEASE) is None


def test_a_dead_walkers_lease_is_taken_over_once_it_expires(walk: Walk) -> None:
    """a dies mid-walk holding the lease (no release): b follows while it is live, takes it
    over once 30 s passed since a last renewed it, and walks the graph from Git to its end."""
    store = MemoryLeaseStore()
    a, b = walker(walk, store, "walker-a"), walker(walk, store, "walker-b")
    walk.clock.advance(6)
    assert a.reconcile("local", GRAPH).action == "step"
    del a  # killed: its lease stays in the store until it expires
    walk.clock.advance(29)
    assert b.reconcile("local", GRAPH).holder == "walker-a"
    walk.clock.advance(1)
    reports: list[Any] = []
    last = b.run("local", GRAPH, poll_seconds=1, on_pass=reports.append)
    assert reports[0].action == "promote"  # the step's analysis was long due
    assert last.outcome is Outcome.PROMOTED
    assert store.swaps == [(LEASE, "walker-a"), (LEASE, "walker-b"), (LEASE, None)]


def test_a_walker_that_stopped_after_one_pass_leaves_the_lease_to_the_next_at_once(
    walk: Walk,
) -> None:
    """`--once` returns releasing the lease: the next walker needs no expiry to act."""
    store = MemoryLeaseStore()
    a, b = walker(walk, store, "walker-a"), walker(walk, store, "walker-b")
    walk.clock.advance(6)
    assert a.reconcile("local", GRAPH).action == "step"
    assert a.lease is not None
    a.lease.release_all()  # as `sluice graph rollout --once` does when its pass returns
    assert store.read(LEASE) is None
    walk.clock.advance(5)  # a's lease would still be live for 25 s
    assert b.reconcile("local", GRAPH).action == "promote"
    assert store.swaps == [(LEASE, "walker-a"), (LEASE, None), (LEASE, "walker-b")]


def test_a_graph_lease_and_a_release_lease_of_one_name_are_two_refs_in_git(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    """In the GitOps remote, a model named as the graph keeps its own lease beside the graph's."""
    store = GitLeaseStore(GitWorkspace(git_remote.url, tmp_path / "clone"))
    assert store.swap(lease_name("local", GRAPH), None, Lease("rollout", 1.0, 1.0, 30.0))
    assert store.swap(LEASE, None, Lease("graph-walker", 1.0, 1.0, 30.0))
    release, graph = store.read(lease_name("local", GRAPH)), store.read(LEASE)
    assert release is not None
    assert graph is not None
    assert (release[0].holder, graph[0].holder) == ("rollout", "graph-walker")
    assert store.swap(LEASE, graph[1], None)
    assert store.read(LEASE) is None
    assert store.read(lease_name("local", GRAPH)) is not None
