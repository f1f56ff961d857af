"""The InferenceGraph router answers as KServe's ``cmd/router`` does, case by case.

Services are an in-memory fake step caller; no server runs. Each test names the KServe
behaviour it checks: Switch's first match and 404, Splitter's weights, Ensemble's keys and Hard
members, Sequence's data passing and condition stop, error propagation, Go's JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.graph_samples import (
    ENSEMBLE_SAMPLE,
    MARKET_REGIME,
    SEQUENCE_SAMPLE,
    SPLITTER_SAMPLE,
    SWITCH_SAMPLE,
    SWITCH_SAMPLE_INPUT,
    graph,
)

from controller.local.graph import (
    GraphAnswer,
    StepAnswer,
    StepCallFailed,
    StepRef,
    answer_graph_request,
    parse_inference_graph,
)
from controller.local.graph.routing import (
    canonical_header,
    pick_splitter_step,
    propagated_headers,
    sequence_request,
)
from controller.local.graph.spec import Step, StepTarget

NO_MATCH = (
    b'{"error":"Failed to process request",'
    b'"cause":"None of the routes matched with the switch condition"}'
)
Handler = Callable[[bytes], StepAnswer]


def reply(payload: Any, status: int = 200) -> Handler:
    """A service that answers ``payload`` as JSON (bytes as they are) with ``status``."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return lambda _request: StepAnswer(status, body)


def echo(name: str) -> Handler:
    """A service answering the switch sample's way: its name as ``source``, the rest echoed."""

    def handle(request: bytes) -> StepAnswer:
        document = json.loads(request)
        return StepAnswer(200, json.dumps({**document, "source": name}).encode())

    return handle


@dataclass
class FakeServices:
    """Services by name or URL; records each call as (target, body, headers)."""

    handlers: dict[str, Handler]
    calls: list[tuple[str, bytes, Mapping[str, str]]] = field(default_factory=list)
    steps: list[tuple[str, StepRef]] = field(default_factory=list)

    async def __call__(
        self, target: StepTarget, body: bytes, headers: Mapping[str, str], step: StepRef
    ) -> StepAnswer:
        key = target.service_name or target.service_url
        self.calls.append((key, body, dict(headers)))
        self.steps.append((key, step))
        handler = self.handlers.get(key)
        if handler is None:
            raise StepCallFailed(f'Post "{key}": dial tcp: connection refused')
        return handler(body)

    def bodies(self, key: str) -> list[Any]:
        return [json.loads(body) for name, body, _ in self.calls if name == key]


def answer(
    obj: Mapping[str, Any],
    payload: Any,
    services: FakeServices,
    *,
    draws: list[int] | None = None,
    headers: Mapping[str, str] | None = None,
) -> GraphAnswer:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    pending = list(draws or [])
    return asyncio.run(
        answer_graph_request(obj, body, headers or {}, services, draw=lambda: pending.pop(0))
    )


def one_node(router_type: str, *steps: dict[str, Any]) -> dict[str, Any]:
    """A graph of a root node only."""
    return graph("one-node", {"root": {"routerType": router_type, "steps": list(steps)}})


def as_json(result: GraphAnswer) -> Any:
    return json.loads(result.body)


# -- Switch ----------------------------------------------------------------------------------


SINGLES = {f"http://single-{i}.default.example.com/switch": echo(f"single-{i}") for i in (1, 2, 3)}


def test_switch_sample_routes_the_readme_input_to_the_pattern_match() -> None:
    """KServe's switch sample sends its README input to single-3 (the pattern condition)."""
    result = answer(SWITCH_SAMPLE, SWITCH_SAMPLE_INPUT, FakeServices(dict(SINGLES)))
    assert result.status == 200
    assert as_json(result) == {**SWITCH_SAMPLE_INPUT, "source": "single-3"}
    assert result.content_type == "application/json"


def test_switch_takes_the_first_matching_step_in_order() -> None:
    """With every condition matching, the first step wins."""
    both = {
        "source": "client",
        "instances": [{"intval": 11, "strval": "red-server"}],
    }
    result = answer(SWITCH_SAMPLE, both, FakeServices(dict(SINGLES)))
    assert as_json(result)["source"] == "single-1"


def test_switch_array_condition_compares_numbers() -> None:
    """``instances.#(intval>10)`` matches an element above 10 and not one at 10."""
    services = FakeServices(dict(SINGLES))
    above = answer(SWITCH_SAMPLE, {"source": "x", "instances": [{"intval": 11}]}, services)
    assert as_json(above)["source"] == "single-2"
    at = answer(SWITCH_SAMPLE, {"source": "x", "instances": [{"intval": 10}]}, services)
    assert at.status == 404


def test_switch_without_a_match_answers_404_with_kserves_words() -> None:
    """No condition matching is 404 "None of the routes matched with the switch condition"."""
    services = FakeServices(dict(SINGLES))
    result = answer(SWITCH_SAMPLE, {"source": "nobody", "instances": []}, services)
    assert (result.status, result.body, result.content_type) == (
        404,
        NO_MATCH,
        "application/json",
    )
    assert services.calls == []


@pytest.mark.parametrize("body", [b"not json", b"", b'{"source": "client"', b"NaN"])
def test_switch_on_input_that_is_not_json_answers_404(body: bytes) -> None:
    """Input that is not valid JSON matches no condition (gjson's ValidBytes fails)."""
    result = answer(SWITCH_SAMPLE, body, FakeServices(dict(SINGLES)))
    assert (result.status, result.body) == (404, NO_MATCH)


def test_switch_passes_on_a_steps_failed_answer() -> None:
    """A Switch returns the chosen step's answer and status, even a failure."""
    services = FakeServices({"http://single-1.default.example.com/switch": reply({"e": 1}, 503)})
    result = answer(SWITCH_SAMPLE, {"source": "client"}, services)
    assert (result.status, as_json(result)) == (503, {"e": 1})


def test_nested_switch_without_a_match_is_a_500_for_the_graph() -> None:
    """Only a root Switch answers 404: an enclosing node turns the error into 500."""
    services = FakeServices({"regime-classifier": reply({"regime": "sideways"})})
    result = answer(MARKET_REGIME, {"x": 1}, services)
    assert (result.status, result.body) == (500, NO_MATCH)


def test_every_switch_decision_is_reported_with_the_chosen_steps_key() -> None:
    """`switched` hears each Switch's choice, by step name else index, and "" for no match,
    at the root (a 404) or nested (a 500): the router's metrics count them, as neither status
    tells a Switch without a branch from a member's own 404 or any other failure."""
    members = {name: reply({"m": name}) for name in ("calm-model", "tail-risk", "momentum")}
    services = FakeServices(
        {"regime-classifier": lambda body: StepAnswer(200, body), **members, "blender": echo("b")}
    )
    heard: list[tuple[str, str]] = []

    def run(obj: Mapping[str, Any], payload: Any, caller: FakeServices) -> int:
        body = json.dumps(payload).encode()
        done = answer_graph_request(obj, body, {}, caller, switched=lambda *d: heard.append(d))
        return asyncio.run(done).status

    statuses = [run(MARKET_REGIME, {"regime": r}, services) for r in ("calm", "volatile", "up")]
    assert statuses == [200, 200, 500]
    assert heard == [("by-regime", "1"), ("by-regime", "0"), ("by-regime", "")]
    heard.clear()
    sources = ("client", "nobody")
    statuses = [run(SWITCH_SAMPLE, {"source": s}, FakeServices(dict(SINGLES))) for s in sources]
    assert (statuses, heard) == ([200, 404], [("root", "0"), ("root", "")])


# -- Splitter --------------------------------------------------------------------------------


def test_splitter_sample_sends_draws_below_20_to_the_first_step() -> None:
    """Each draw in [0, 100) picks the step whose cumulative weight exceeds it: 20 and 80."""
    steps = parse_inference_graph(SPLITTER_SAMPLE).nodes["root"].steps
    picked = [pick_splitter_step(steps, draw) for draw in range(100)]
    names = [step.target.service_name for step in picked if step is not None]
    assert names == ["sklearn-iris"] * 20 + ["xgboost-iris"] * 80


def test_splitter_answers_with_the_picked_service() -> None:
    """The draw decides which service answers the request."""
    services = FakeServices({"sklearn-iris": reply({"m": "s"}), "xgboost-iris": reply({"m": "x"})})
    low = answer(SPLITTER_SAMPLE, {"instances": [1]}, services, draws=[19])
    high = answer(SPLITTER_SAMPLE, {"instances": [1]}, services, draws=[20])
    assert (as_json(low), as_json(high)) == ({"m": "s"}, {"m": "x"})


def test_splitter_whose_weights_run_out_answers_500() -> None:
    """A draw past the weights' sum picks nothing: 500 "no route was selected by the splitter"
    (the webhook refuses such a graph; the router still answers it)."""
    short = one_node("Splitter", {"serviceName": "a", "weight": 50})
    result = answer(short, {}, FakeServices({"a": reply({})}), draws=[60])
    assert (result.status, as_json(result)) == (
        500,
        {"error": "Failed to process request", "cause": "no route was selected by the splitter"},
    )


def test_every_node_step_is_reported_with_its_answer_and_time() -> None:
    """`branched` hears each step that routes to a node, once the node answered: where the
    step sits, the node, its status (500 when the node failed) and the clock's milliseconds.
    A graph canary's root Splitter is how two graphs are compared."""
    canary = graph(
        "two",
        {
            "root": {
                "routerType": "Splitter",
                "steps": [
                    {"name": "stable", "nodeName": "stable", "weight": 90},
                    {"name": "canary", "nodeName": "canary", "weight": 10},
                ],
            },
            "stable": {"routerType": "Sequence", "steps": [{"serviceName": "old"}]},
            "canary": {"routerType": "Sequence", "steps": [{"serviceName": "new"}]},
        },
    )
    services = FakeServices({"old": reply({"m": "old"}, 201)})  # "new" never answers
    ticks = iter(range(100))
    heard: list[tuple[str, str, str, int, float]] = []

    def run(draw: int) -> int:
        done = answer_graph_request(
            canary, b"{}", {}, services, draw=lambda: draw, clock=lambda: next(ticks) / 10,
            branched=lambda step, node, status, ms: heard.append(
                (step.node, step.key, node, status, round(ms))
            ),
        )  # fmt: skip
        return asyncio.run(done).status

    assert [run(89), run(90)] == [201, 500]
    assert heard == [("root", "stable", "stable", 201, 100), ("root", "canary", "canary", 500, 100)]


# -- Ensemble --------------------------------------------------------------------------------


def test_ensemble_sample_is_keyed_by_step_name_as_in_kserves_readme() -> None:
    """The ensemble sample answers exactly the README's body."""
    services = FakeServices(
        {
            "sklearn-iris": reply({"predictions": [1, 1]}),
            "xgboost-iris": reply({"predictions": [1.0, 1.0]}),
        }
    )
    result = answer(ENSEMBLE_SAMPLE, {"instances": [[6.8, 2.8, 4.8, 1.4]]}, services)
    assert result.status == 200
    assert result.body == (
        b'{"sklearn-iris":{"predictions":[1,1]},"xgboost-iris":{"predictions":[1,1]}}'
    )


def test_ensemble_keys_unnamed_steps_by_index() -> None:
    """An unnamed step's answer is keyed by its index, as a string."""
    mixed = one_node(
        "Ensemble", {"serviceName": "a"}, {"serviceName": "b", "name": "bee"}, {"serviceName": "c"}
    )
    services = FakeServices({k: reply({"from": k}) for k in "abc"})
    assert as_json(answer(mixed, {}, services)) == {
        "0": {"from": "a"},
        "bee": {"from": "b"},
        "2": {"from": "c"},
    }


def test_ensemble_merges_soft_failures_and_writes_json_as_go_does() -> None:
    """A Soft member's failed answer is merged like any other; keys sort, floats lose ".0",
    and ``<`` is escaped, as Go's json.Marshal writes them."""
    services = FakeServices(
        {"sklearn-iris": reply({"z": 2.0, "a": "<b>"}), "xgboost-iris": reply({"error": "x"}, 503)}
    )
    result = answer(ENSEMBLE_SAMPLE, {}, services)
    assert result.status == 200
    assert result.body == (
        b'{"sklearn-iris":{"a":"\\u003cb\\u003e","z":2},"xgboost-iris":{"error":"x"}}'
    )


def test_ensemble_first_failed_hard_member_decides_the_answer() -> None:
    """The first Hard member (in step order) that fails answers for the node, with its status."""
    hard = one_node(
        "Ensemble",
        {"serviceName": "a", "name": "a"},
        {"serviceName": "b", "name": "b", "dependency": "Hard"},
        {"serviceName": "c", "name": "c", "dependency": "Hard"},
    )
    services = FakeServices(
        {"a": reply({"ok": 1}, 500), "b": reply({"why": "b"}, 422), "c": reply({"why": "c"}, 503)}
    )
    result = answer(hard, {}, services)
    assert (result.status, as_json(result)) == (422, {"why": "b"})


def test_ensemble_member_that_is_not_a_json_object_fails_the_node() -> None:
    """A member answering a JSON array (or no JSON) fails the whole request with 500."""
    services = FakeServices({"sklearn-iris": reply([1, 2]), "xgboost-iris": reply({"p": 1})})
    result = answer(ENSEMBLE_SAMPLE, {}, services)
    assert (result.status, as_json(result)["cause"]) == (
        500,
        "json: cannot unmarshal array into Go value of type map[string]interface {}",
    )


def test_ensemble_member_without_an_answer_fails_the_node() -> None:
    """A member that cannot be reached fails the request with 500 and the caller's message."""
    result = answer(ENSEMBLE_SAMPLE, {}, FakeServices({"sklearn-iris": reply({"p": 1})}))
    assert (result.status, as_json(result)["cause"]) == (
        500,
        'Post "xgboost-iris": dial tcp: connection refused',
    )


def test_ensemble_members_run_concurrently() -> None:
    """Every member is called before any answers: each waits until all have started."""
    started: list[str] = []
    everyone = asyncio.Event()

    class Barrier:
        async def __call__(
            self, target: StepTarget, body: bytes, headers: Mapping[str, str], step: StepRef
        ) -> StepAnswer:
            started.append(target.service_name)
            if len(started) == 2:
                everyone.set()
            await asyncio.wait_for(everyone.wait(), timeout=5)
            return StepAnswer(200, b"{}")

    async def run() -> GraphAnswer:
        return await answer_graph_request(ENSEMBLE_SAMPLE, b"{}", {}, Barrier())

    assert asyncio.run(run()).body == b'{"sklearn-iris":{},"xgboost-iris":{}}'


# -- Sequence --------------------------------------------------------------------------------


def test_sequence_sample_sends_the_request_to_both_steps() -> None:
    """``data: $request`` gives the second step the graph's request; the last answer wins."""
    services = FakeServices(
        {"sklearn-iris": reply({"predictions": [1]}), "xgboost-iris": reply({"predictions": [2]})}
    )
    result = answer(SEQUENCE_SAMPLE, {"instances": [[1, 2]]}, services)
    assert as_json(result) == {"predictions": [2]}
    assert services.bodies("xgboost-iris") == [{"instances": [[1, 2]]}]


def test_sequence_passes_the_previous_response_with_dollar_response() -> None:
    """``data: $response`` gives a step the previous step's answer, byte for byte."""
    chain = one_node("Sequence", {"serviceName": "a"}, {"serviceName": "b", "data": "$response"})
    services = FakeServices({"a": reply(b'{"x": 1.0}'), "b": reply({"done": True}, 201)})
    result = answer(chain, {"in": 1}, services)
    assert (result.status, as_json(result)) == (201, {"done": True})
    assert services.calls[1][1] == b'{"x": 1.0}'


def test_sequence_stops_with_200_when_a_condition_does_not_match() -> None:
    """A step whose condition finds nothing in the previous answer ends the Sequence with that
    answer and 200, even after a Soft failure."""
    stop = one_node(
        "Sequence", {"serviceName": "a"}, {"serviceName": "b", "condition": "[@this].#(go==true)"}
    )
    services = FakeServices({"a": reply({"go": False}, 503), "b": reply({"b": 1})})
    result = answer(stop, {}, services)
    assert (result.status, as_json(result)) == (200, {"go": False})
    assert [name for name, _, _ in services.calls] == ["a"]


def test_sequence_runs_a_step_whose_condition_matches() -> None:
    """A matching condition runs the step."""
    run = one_node("Sequence", {"serviceName": "a"}, {"serviceName": "b", "condition": "score"})
    services = FakeServices({"a": reply({"score": 0}), "b": reply({"b": 1})})
    assert as_json(answer(run, {}, services)) == {"b": 1}


def test_sequence_condition_on_the_first_step_is_an_invalid_response() -> None:
    """KServe evaluates a condition on the previous answer: on the first step there is none,
    so the graph answers 500 "invalid response"."""
    first = one_node("Sequence", {"serviceName": "a", "condition": "x"})
    result = answer(first, {"x": 1}, FakeServices({"a": reply({})}))
    assert (result.status, as_json(result)["cause"]) == (500, "invalid response")


def test_sequence_condition_on_a_response_that_is_not_json_is_a_500() -> None:
    """A condition cannot be evaluated on an answer that is not JSON: 500."""
    plain = one_node("Sequence", {"serviceName": "a"}, {"serviceName": "b", "condition": "x"})
    result = answer(plain, {}, FakeServices({"a": reply(b"plain text"), "b": reply({})}))
    assert (result.status, as_json(result)["cause"]) == (500, "invalid response")


def test_sequence_hard_failure_stops_and_soft_failure_goes_on() -> None:
    """A Hard step's failure is the graph's answer; a Soft one's is passed to the next step."""
    steps = [{"serviceName": "a"}, {"serviceName": "b", "data": "$response"}]
    soft = one_node("Sequence", *steps)
    hard = one_node("Sequence", {**steps[0], "dependency": "Hard"}, steps[1])
    services = FakeServices({"a": reply({"err": "a"}, 503), "b": reply({"b": 1})})
    assert (answer(soft, {}, services).status, services.bodies("b")) == (200, [{"err": "a"}])
    result = answer(hard, {}, services)
    assert (result.status, as_json(result)) == (503, {"err": "a"})


def test_map_predictions_to_instances_keeps_only_instances() -> None:
    """``mapPredictionsToInstances`` sends ``{"instances": <predictions>}`` (Go's struct
    re-encoding drops every other field)."""
    mapped = one_node(
        "Sequence",
        {"serviceName": "a"},
        {"serviceName": "b", "data": "$response", "mapPredictionsToInstances": True},
    )
    services = FakeServices(
        {"a": reply({"predictions": [1.0, 0.25], "model": "a"}), "b": reply({"b": 1})}
    )
    answer(mapped, {}, services)
    assert services.calls[1][1] == b'{"instances":[1,0.25]}'


@pytest.mark.parametrize(
    "previous", [b'{"predictions": []}', b'{"predictions": {"a": 1}}', b"[1]", b"nope"]
)
def test_map_predictions_to_instances_leaves_other_bodies_alone(previous: bytes) -> None:
    """Empty or non-list predictions, or a body that is not an object, pass unchanged."""
    step = Step(StepTarget(service_name="b"), data="$response", map_predictions_to_instances=True)
    assert sequence_request(step, 1, b"{}", previous) == previous


def test_sequence_without_steps_answers_500() -> None:
    """KServe's router cannot answer an empty Sequence (status 0); here it is a 500."""
    empty = one_node("Sequence")
    assert answer(empty, {}, FakeServices({})).status == 500


# -- the whole graph ------------------------------------------------------------------------


def market_services() -> FakeServices:
    return FakeServices(
        {
            "regime-classifier": reply({"regime": "volatile"}),
            "tail-risk": reply({"predictions": [0.9]}),
            "momentum": reply({"predictions": [0.2]}),
            "blender": lambda body: StepAnswer(200, body),
            "calm-model": reply({"predictions": [0.1]}),
        }
    )


def test_issue_graph_blends_the_ensemble_for_a_volatile_regime() -> None:
    """Classifier, Switch on its answer, then the Ensemble's merged answer into the blender."""
    services = market_services()
    result = answer(MARKET_REGIME, {"instances": [[1.5]]}, services)
    assert result.status == 200
    assert result.body == b'{"momentum":{"predictions":[0.2]},"tail-risk":{"predictions":[0.9]}}'
    assert services.bodies("tail-risk") == [{"regime": "volatile"}]
    assert [name for name, _, _ in services.calls][-1] == "blender"


def test_each_call_names_its_node_and_step() -> None:
    """The caller learns which node and step (name, else index) each call is for."""
    services = market_services()
    answer(MARKET_REGIME, {"instances": [[1.5]]}, services)
    assert sorted(services.steps, key=lambda call: call[0]) == [
        ("blender", StepRef("black-swan", 1)),
        ("momentum", StepRef("tail-models", 1, "momentum")),
        ("regime-classifier", StepRef("root", 0, "classify")),
        ("tail-risk", StepRef("tail-models", 0, "tail-risk")),
    ]
    assert [StepRef("a", 2).key, StepRef("a", 2, "b").key] == ["2", "b"]


def test_issue_graph_routes_a_calm_regime_to_one_model() -> None:
    """The calm branch calls only the calm model."""
    services = market_services()
    services.handlers["regime-classifier"] = reply({"regime": "calm"})
    assert as_json(answer(MARKET_REGIME, {"instances": [[0.1]]}, services)) == {
        "predictions": [0.1]
    }
    assert sorted(name for name, _, _ in services.calls) == ["calm-model", "regime-classifier"]


def test_issue_graph_hard_tail_model_failure_reaches_the_blender() -> None:
    """The Hard tail-risk member's failure ends the Ensemble with its answer and status; the
    Ensemble's step in its Sequence is Soft, so the blender still gets that answer."""
    services = market_services()
    services.handlers["tail-risk"] = reply({"error": "tail"}, 503)
    result = answer(MARKET_REGIME, {}, services)
    assert (result.status, as_json(result)) == (200, {"error": "tail"})
    assert services.bodies("blender") == [{"error": "tail"}]


def test_hard_blender_failure_is_the_graphs_answer() -> None:
    """A Hard step's failure inside a nested Sequence is the graph's answer, status included."""
    services = market_services()
    services.handlers["blender"] = reply({"error": "blend"}, 502)
    result = answer(MARKET_REGIME, {}, services)
    assert (result.status, as_json(result)) == (502, {"error": "blend"})


def test_step_naming_no_node_answers_invalid_route_type() -> None:
    """A ``nodeName`` naming no node is KServe's "invalid route type: " 500."""
    dangling = one_node("Sequence", {"nodeName": "missing"})
    result = answer(dangling, {}, FakeServices({}))
    assert (result.status, as_json(result)["cause"]) == (500, "invalid route type: ")


def test_answer_that_is_not_json_has_no_json_content_type() -> None:
    """The router labels its answer JSON only when it is."""
    services = FakeServices({k: reply(b"ok") for k in ("sklearn-iris", "xgboost-iris")})
    result = answer(SEQUENCE_SAMPLE, {}, services)
    assert (result.status, result.body, result.content_type) == (200, b"ok", None)


# -- headers ---------------------------------------------------------------------------------


def test_steps_receive_only_propagated_headers_and_json_content_type() -> None:
    """KServe's default propagates Authorization and sets Content-Type: application/json."""
    services = FakeServices({"sklearn-iris": reply({}), "xgboost-iris": reply({})})
    answer(
        SEQUENCE_SAMPLE,
        {},
        services,
        headers={"authorization": "Bearer t", "x-trace": "1", "content-type": "text/plain"},
    )
    assert services.calls[0][2] == {"Authorization": "Bearer t", "Content-Type": "application/json"}


def test_header_patterns_match_anywhere_in_the_canonical_name() -> None:
    """Patterns are Go regular expressions matched anywhere, against canonical names."""
    headers = propagated_headers({"x-request-id": "r", "x-b3-traceid": "t"}, ["Request", "^X-B3"])
    assert headers == {"X-Request-Id": "r", "X-B3-Traceid": "t", "Content-Type": "application/json"}
    assert canonical_header("content-TYPE") == "Content-Type"
