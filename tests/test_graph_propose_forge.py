"""A graph proposal's pull request (`--forge github`), on an in-memory remote and forge: title,
labels, the card with the spec diff and the checks, the validation status, and a newer proposal
of the same graph closing the older one."""

from __future__ import annotations

from support.gitops_repo import ROOT, manifest_files

from controller.proposals.graph_propose import GraphProposal, propose_graph
from controller.testing import MemoryReleaseRepository
from controller.testing.forge import MemoryForge

OVERLAY = "manifests/overlays/local"
EXAMPLE = ROOT / "models/market_regime/overlay"
GRAPH_TEXT = (EXAMPLE / "inference-graph.yaml").read_text()


def repository() -> MemoryReleaseRepository:
    files = {k: v for k, v in manifest_files().items() if not k.startswith(f"{OVERLAY}/")}
    files |= {f"{OVERLAY}/{p.name}": p.read_text() for p in EXAMPLE.iterdir() if p.is_file()}
    return MemoryReleaseRepository(files)


def proposal(threshold: str) -> GraphProposal:
    text = GRAPH_TEXT.replace(
        'condition: instances.#(regime=="black_swan")',
        f"condition: instances.#(p_black_swan>{threshold})",
    )
    return GraphProposal("market-regime", "local", text, "market-regime.yaml", weight=10)


def test_the_pull_request_shows_the_spec_diff_and_a_newer_proposal_supersedes_it() -> None:
    workspace, forge = repository(), MemoryForge()
    first = propose_graph(proposal("0.2"), workspace=workspace, forge=forge)
    pull = forge.pulls[first.pull_request or 0]
    assert pull.title == "graph market-regime → local (canary 10%)"
    assert pull.branch == f"sluice/local/graph-market-regime/{first.digest}"
    assert pull.labels == ["sluice", "graph:market-regime", "env:local"]
    assert '-          condition: instances.#(regime=="black_swan")' in pull.body
    assert "+          condition: instances.#(p_black_swan>0.2)" in pull.body
    assert "- by-regime: changed" in pull.body
    assert "- [pass] canary form (both graphs under the root Splitter)" in pull.body
    (status,) = forge.statuses_of(first.commit)
    assert (status.context, status.state) == ("sluice/validate", "success")

    second = propose_graph(proposal("0.3"), workspace=workspace, forge=forge)
    assert second.superseded == (first.pull_request,)
    assert forge.pulls[first.pull_request or 0].state == "closed"
