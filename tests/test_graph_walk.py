"""A graph canary's walk as compare-and-swap commits, on an in-memory remote: another writer's
change in between is a conflict (nothing overwritten), the same change landed first is done
already (nothing committed twice)."""

from __future__ import annotations

import pytest
from support.gitops_repo import ROOT, manifest_files

from controller.errors import GitConflict
from controller.manifests.graph_canary import canary_form, promoted, with_canary_weight
from controller.manifests.graph_file import dump_graph, load_graph
from controller.proposals.graph_walk import GraphWalk, walk_graph
from controller.testing import MemoryReleaseRepository

OVERLAY = "manifests/overlays/local"
GRAPH_FILE = f"{OVERLAY}/inference-graph.yaml"
EXAMPLE = ROOT / "models/market_regime/overlay"


def in_canary_form() -> tuple[MemoryReleaseRepository, str]:
    """A remote whose local graph is in canary form at 10 %; the form's text."""
    old = load_graph((EXAMPLE / "inference-graph.yaml").read_text(), source="old")
    new = load_graph((EXAMPLE / "inference-graph.yaml").read_text(), source="new")
    new["spec"]["nodes"]["blend-inputs"]["steps"].pop()  # the blend without the volatile's view
    form = dump_graph(canary_form(old, new, 10))
    files = {k: v for k, v in manifest_files().items() if not k.startswith(f"{OVERLAY}/")}
    files |= {f"{OVERLAY}/{p.name}": p.read_text() for p in EXAMPLE.iterdir() if p.is_file()}
    return MemoryReleaseRepository({**files, GRAPH_FILE: form}), form


def test_a_graph_changed_in_between_is_a_conflict_and_is_not_overwritten() -> None:
    workspace, form = in_canary_form()
    by_hand = dump_graph(with_canary_weight(load_graph(form, source="form"), 30))

    def someone_steps_it_first(branch: str) -> None:
        workspace.before_push = None
        workspace.remote.commit(branch, {GRAPH_FILE: by_hand}, "graph by hand: 30%")

    workspace.before_push = someone_steps_it_first
    with pytest.raises(GitConflict, match="changed on main since it was read; run again"):
        walk_graph(GraphWalk("market-regime", "local", "step", weight=50), workspace=workspace)
    workspace.sync()
    assert workspace.read("main", GRAPH_FILE) == by_hand.rstrip("\n")  # as git show reads it


def test_the_same_change_landed_first_is_done_already() -> None:
    workspace, form = in_canary_form()
    done = dump_graph(promoted(load_graph(form, source="form")))

    def another_controller_promotes(branch: str) -> None:
        workspace.before_push = None
        workspace.remote.commit(branch, {GRAPH_FILE: done}, "graph market-regime: promoted")

    workspace.before_push = another_controller_promotes
    result = walk_graph(GraphWalk("market-regime", "local", "promote"), workspace=workspace)
    assert result.status == "done-already"
    workspace.sync()
    assert workspace.read("main", GRAPH_FILE) == done.rstrip("\n")
