"""The words of a graph change: subjects that fit Argo CD's 64 characters, and the PR's card."""

from __future__ import annotations

from controller.text.graph_messages import (
    GRAPH_CARD_MARKER,
    GraphCard,
    GraphCommit,
    render_graph_card,
    render_graph_message,
)


def subject(commit: GraphCommit) -> str:
    return render_graph_message(commit).partition("\n")[0]


def test_each_commit_says_what_moved_where() -> None:
    base = {"graph": "market-regime", "environment": "local", "digest": "ede3348a79"}
    assert subject(GraphCommit(**base, action="propose", weight=10)) == (
        "graph market-regime → local (canary 10%)"
    )
    assert subject(GraphCommit(**base, action="step", weight=50, previous_weight=10)) == (
        "graph market-regime: canary 50% (local)"
    )
    assert subject(GraphCommit(**base, action="promote", previous_weight=50)) == (
        "graph market-regime: promoted (local)"
    )
    rollback = GraphCommit(**base, action="rollback", reason="black swans answer 500")
    assert subject(rollback) == "rollback graph market-regime: black swans answer 500"
    message = render_graph_message(rollback)
    assert "Sluice-Graph: market-regime\nSluice-Env: local\n" in message
    assert "Sluice-Graph-Canary: ede3348a79\nSluice-Action: graph-rollback\n" in message


def test_long_names_and_reasons_are_cut_to_64_characters() -> None:
    long_graph = GraphCommit(
        graph="g" * 60, environment="production", digest="d", action="propose", weight=10
    )
    assert len(subject(long_graph)) <= 64
    assert subject(long_graph).endswith("… → production (canary 10%)")
    reason = GraphCommit(
        graph="market-regime", environment="local", digest="d", action="rollback",
        reason="the canary's black-swan branch answered 500 to one request in five, all day",
    )  # fmt: skip
    assert len(subject(reason)) == 64
    assert subject(reason).endswith("…")
    assert "one request in five, all day" in render_graph_message(reason)  # the body has it all


def test_the_card_shows_the_spec_diff_the_checks_and_the_next_commands() -> None:
    commit = GraphCommit(
        graph="market-regime", environment="local", digest="ede3348a79", action="propose",
        weight=10, changes=("by-regime: changed",),
    )  # fmt: skip
    card = render_graph_card(
        GraphCard(commit, "manifests/overlays/local/inference-graph.yaml", "-a\n+b\n", ("ok",))
    )
    assert card.startswith("## InferenceGraph market-regime → local: canary 10%\n")
    assert "```diff\n-a\n+b\n```" in card
    assert "- [pass] ok" in card
    assert "- by-regime: changed" in card
    assert "$ sluice graph promote market-regime --env local" in card
    assert card.rstrip().endswith(GRAPH_CARD_MARKER)
