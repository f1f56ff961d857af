"""What the graph would have answered with a member's answer given: ``POST /_sluice/replay``.

The example market-regime graph (``models/market_regime/overlay/inference-graph.yaml``) runs
on a real local graph router, its four members stand-in model servers behind real local
routers (:mod:`support.graph_members`). A replay of classifier answers routes each as the
graph would have routed the classifier's answer, without calling the classifier and without
counting in the graph's series; the local target's adapter asks that router as a shadow judge
would; the fake and the cluster's null object stand in for it elsewhere.
"""

from __future__ import annotations

import http.client
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from support.graph_members import Member, deploy, members
from support.graph_samples import graph
from support.runtime_file import standin_runtime

from controller.errors import ConfigError, InputError, RemoteUnavailable, TransientError
from controller.local.graph_replay import LocalGraphReplay
from controller.local.graph_router import GraphRouter
from controller.local.state import write_json
from controller.local.target import RUNTIME_FILE, LocalTarget
from controller.null_ports import NO_GRAPH_REPLAY
from controller.ports import GraphReplay
from controller.target_types import ReplayedAnswer
from controller.testing import MemoryGraphReplay

GRAPH = "market-regime"
CLASSIFIER, CALM, VOLATILE, BLEND = (
    f"market-regime-{m}" for m in ("classifier", "calm", "volatile", "blend")
)
EXAMPLE = Path(__file__).resolve().parents[1] / "models/market_regime/overlay/inference-graph.yaml"
FEATURES = {"ret_1": 0.01, "vol_5": 0.2}
#: Each specialist's own answer (the blend's names it too).
ANSWERS = {
    name.replace("-", "_"): {"predictions": [{"p_up": p, "by": name}]}
    for name, p in ((CALM, 0.7), (VOLATILE, 0.4), (BLEND, 0.55))
}


def classified(regime: str, p_calm: float = 0.5) -> dict[str, Any]:
    """The classifier's answer for one row, as the prediction log keeps it."""
    return {"predictions": [{"regime": regime, "p_calm": p_calm, **FEATURES}]}


def example() -> dict[str, Any]:
    obj = YAML(typ="safe").load(EXAMPLE.read_text())
    obj["metadata"]["namespace"] = "models-local"
    return dict(obj)


@pytest.fixture
def team() -> Iterator[dict[str, Member]]:
    with members(CLASSIFIER, CALM, VOLATILE, BLEND, **ANSWERS) as started:
        yield started


@pytest.fixture
def router(team: dict[str, Member]) -> Iterator[GraphRouter]:
    with GraphRouter(graph=GRAPH, namespace="models-local") as started:
        deploy(started, example(), team)
        yield started


def post(router: GraphRouter, payload: Any, path: str = "/_sluice/replay") -> tuple[int, Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
    connection.request("POST", path, raw, {"Content-Type": "application/json"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, json.loads(body)


def step_series(router: GraphRouter) -> list[str]:
    """The graph's step, Switch and branch samples as Prometheus scrapes them (no latencies)."""
    with urllib.request.urlopen(f"{router.url}/metrics", timeout=5) as response:  # noqa: S310
        lines = response.read().decode().splitlines()
    return sorted(
        line
        for line in lines
        if line.startswith("sluice_graph_") and "_bucket" not in line and "_sum" not in line
    )


def counts(router: GraphRouter) -> tuple[dict[Any, int], ...]:
    """What the graph's router counted: steps, Switch decisions, branches, its own requests."""
    steps = router.steps
    return steps.counts(), steps.switch_counts(), steps.branch_counts(), router.metrics.counts()


def received(member: Member) -> list[Any]:
    return [body for _, body in member.server.received]


def test_a_replayed_regime_routes_to_its_specialist_whose_answer_is_the_graphs(
    router: GraphRouter, team: dict[str, Member]
) -> None:
    """Each answer goes where its regime says, in order; the classifier is never called: its
    step answers what was given, which the Switch then reads as instances."""
    status, body = post(
        router, {"member": CLASSIFIER, "answers": [classified("calm"), classified("volatile")]}
    )
    assert status == 200
    assert body == {
        "answers": [
            {"status": 200, "output": ANSWERS["market_regime_calm"]},
            {"status": 200, "output": ANSWERS["market_regime_volatile"]},
        ]
    }
    assert received(team[CLASSIFIER]) == []
    assert received(team[CALM]) == [{"instances": classified("calm")["predictions"]}]
    assert received(team[VOLATILE]) == [{"instances": classified("volatile")["predictions"]}]
    assert received(team[BLEND]) == []
    # Marked, so the member's own router (a real one) counts none of it as client traffic.
    assert team[CALM].router.metrics.counts() == {}


def test_a_black_swan_goes_through_the_ensemble_with_the_given_answer_as_the_classifiers(
    router: GraphRouter, team: dict[str, Member]
) -> None:
    """The Ensemble asks the classifier again: that step too answers the given answer, so the
    blend reads it beside both specialists' answers."""
    swan = classified("black_swan", p_calm=0.1)
    status, body = post(router, {"member": CLASSIFIER, "answers": [swan]})
    assert (status, body) == (
        200,
        {"answers": [{"status": 200, "output": ANSWERS["market_regime_blend"]}]},
    )
    assert received(team[CLASSIFIER]) == []
    assert received(team[BLEND]) == [
        {
            "classifier": swan,
            "calm": ANSWERS["market_regime_calm"],
            "volatile": ANSWERS["market_regime_volatile"],
        }
    ]


def test_replays_are_not_counted_in_the_graphs_series(
    router: GraphRouter, team: dict[str, Member]
) -> None:
    """A client's request moves the step, Switch and branch series and the graph's own
    request series; replays of every branch move none of them."""
    connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
    connection.request("POST", "/", json.dumps({"instances": [FEATURES]}).encode())
    assert connection.getresponse().status == 500  # the stand-in classifier names no regime
    connection.close()
    counted = counts(router)
    scraped = step_series(router)
    assert any(line.startswith("sluice_graph_step") for line in scraped)
    answers = [classified(regime) for regime in ("calm", "volatile", "black_swan")] * 4
    status, body = post(router, {"member": CLASSIFIER, "answers": answers})
    assert status == 200
    assert [a["status"] for a in body["answers"]] == [200] * 12
    assert counts(router) == counted
    assert step_series(router) == scraped


def test_a_member_that_is_not_the_root_sequences_first_step_is_refused(
    router: GraphRouter, team: dict[str, Member]
) -> None:
    """Only the root Sequence's first step reads the request body and nothing else: a
    specialist's answers, or a graph whose root is a Switch, cannot be replayed (409)."""
    refused = post(router, {"member": CALM, "answers": [ANSWERS["market_regime_calm"]]})
    assert refused == (
        409,
        {"error": f"replay needs {CALM} as the first step of the graph's root Sequence"},
    )
    switched = graph(
        "switched",
        {
            "root": {
                "routerType": "Switch",
                "steps": [{"serviceName": CLASSIFIER, "condition": "a"}],
            }
        },
    )
    with GraphRouter(graph="switched") as switch:
        deploy(switch, switched, team)
        status, body = post(switch, {"member": CLASSIFIER, "answers": []})
    assert status == 409
    assert "as the first step of the graph's root Sequence" in body["error"]
    assert received(team[CALM]) == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "the body is not JSON"),
        ([classified("calm")], '{"member": "<name>", "answers": [...]}'),
        ({"answers": [classified("calm")]}, '"member" must name'),
        ({"member": CLASSIFIER, "answers": classified("calm")}, '"answers" must be a list'),
        ({"member": CLASSIFIER, "answers": [{}] * 1001}, "at most 1000 per call"),
    ],
)
def test_malformed_replays_are_400_with_the_reason(
    router: GraphRouter, team: dict[str, Member], payload: Any, reason: str
) -> None:
    status, body = post(router, payload)
    assert status == 400
    assert reason in body["error"]
    assert "\n" not in body["error"]
    assert received(team[CALM]) == received(team[VOLATILE]) == []


def test_an_undeployed_graph_replays_nothing(router: GraphRouter) -> None:
    router.deploy(None, "service market-regime-calm is not ready")
    status, body = post(router, {"member": CLASSIFIER, "answers": [classified("calm")]})
    assert status == 503
    assert body["error"].endswith("service market-regime-calm is not ready")


def test_only_post_replays(router: GraphRouter) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
    connection.request("GET", "/_sluice/replay")
    response = connection.getresponse()
    response.read()
    connection.close()
    assert (response.status, response.getheader("Allow")) == (405, "POST")


def test_the_local_adapter_replays_in_batches_through_the_graphs_router(
    router: GraphRouter, team: dict[str, Member], tmp_path: Path
) -> None:
    """LocalTarget finds the graph's router in runtime.json as its other readers do; the
    adapter sends the answers in batches and keeps their order."""
    root = tmp_path.resolve()
    with standin_runtime(root) as pid:
        write_json(
            root / RUNTIME_FILE,
            {
                "pid": pid,
                "env": "local",
                "ports": {},
                "inferenceGraphs": {GRAPH: {"object": example(), "url": router.url}},
            },
        )
        target = LocalTarget(root)
        replayer: GraphReplay = target.graph_replay("local")
        assert isinstance(replayer, LocalGraphReplay)
        replayer.batch = 2
        regimes = ["volatile", "calm", "black_swan", "calm", "unknown"]
        replayed = replayer.replay(GRAPH, CLASSIFIER, [classified(r) for r in regimes])
        with pytest.raises(ConfigError, match=f"replay needs {CALM} as the first step"):
            replayer.replay(GRAPH, CALM, [ANSWERS["market_regime_calm"]])
        with pytest.raises(RemoteUnavailable, match="InferenceGraph other has no router"):
            replayer.replay("other", CLASSIFIER, [classified("calm")])
    assert [r.output for r in replayed[:4]] == [
        ANSWERS["market_regime_volatile"],
        ANSWERS["market_regime_calm"],
        ANSWERS["market_regime_blend"],
        ANSWERS["market_regime_calm"],
    ]
    assert [r.status for r in replayed] == [200, 200, 200, 200, 500]  # no route for "unknown"
    assert replayed[4].output == {
        "error": "Failed to process request",
        "cause": "None of the routes matched with the switch condition",
    }
    assert len(team[CALM].server.received) == 3  # twice routed, once in the Ensemble
    assert replayer.replay(GRAPH, CLASSIFIER, []) == []


def test_the_local_adapter_turns_router_failures_into_sluices_errors(
    router: GraphRouter,
) -> None:
    """A router that does not answer is transient, with the fix; one not deployed too, with
    its reason; answers that are not JSON are the caller's input error."""
    url = router.url
    router.deploy(None, "service market-regime-blend is not ready")
    replayer = LocalGraphReplay(lambda graph: url)
    with pytest.raises(TransientError, match="market-regime-blend is not ready"):
        replayer.replay(GRAPH, CLASSIFIER, [classified("calm")])
    with pytest.raises(InputError, match="not JSON"):
        replayer.replay(GRAPH, CLASSIFIER, [{"p": float("nan")}])
    router.stop()
    with pytest.raises(TransientError, match=f"InferenceGraph {GRAPH} at .* did not answer") as e:
        replayer.replay(GRAPH, CLASSIFIER, [classified("calm")])
    assert "`sluice local up`" in str(e.value)


def test_the_fake_answers_with_the_tests_function_and_records_each_call() -> None:
    def specialist(graph: str, member: str, answer: object) -> ReplayedAnswer:
        assert isinstance(answer, dict)
        return ReplayedAnswer(200, {"by": answer["predictions"][0]["regime"]})

    fake = MemoryGraphReplay(specialist)
    replayer: GraphReplay = fake
    answers = [classified("calm"), classified("volatile")]
    assert replayer.replay(GRAPH, CLASSIFIER, answers) == [
        ReplayedAnswer(200, {"by": "calm"}),
        ReplayedAnswer(200, {"by": "volatile"}),
    ]
    fake.failure = TransientError("the router did not answer")
    with pytest.raises(TransientError):
        replayer.replay(GRAPH, CLASSIFIER, answers[:1])
    assert fake.calls == [
        (GRAPH, CLASSIFIER, tuple(answers)),
        (GRAPH, CLASSIFIER, tuple(answers[:1])),
    ]


def test_a_cluster_has_no_replay_and_says_where_it_runs() -> None:
    replayer: GraphReplay = NO_GRAPH_REPLAY
    with pytest.raises(ConfigError) as refused:
        replayer.replay(GRAPH, CLASSIFIER, [classified("calm")])
    assert "runs on the local target's graph router only" in str(refused.value)
    assert "KServe's router has no replay" in str(refused.value)
