"""The InferenceGraph on the status page of `sluice serve`, opened in a real headless Chromium.

The local environment of a GitOps remote serves the market-regime example as the README says
to (models/market_regime/overlay/ copied to manifests/overlays/local/): a classifier, a Switch
by regime to the calm or the volatile specialist, black swans to the blend of an Ensemble; each
member is a release of its own, the calm specialist's v2 at a 50 % canary beside v1. The local
target is its runtime's runtime.json, written with the runtime's own status code
(:mod:`support.runtime_file`) rather than by model servers; Prometheus is a stand-in
(:mod:`support.prometheus_api`) that counts 1,000 requests in the graph's step series (610
calm, 300 volatile, 90 black swans) and draws the canary's charts. `sluice serve --env local`
runs as a user starts it, on its default target (the local one).

The screenshot goes to tests/artifacts/status-page-graph.png and the DOM Chromium read beside
it, status-page-graph.html (both gitignored). With
``SLUICE_README_IMAGE=1`` the test also writes it over
.github/images/market-regime-status.png, the README's image of the page.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from ruamel.yaml import YAML
from support.chromium import chromium
from support.gitops_repo import ROOT, commit_now, seed_manifests
from support.gitrepo import GitRemote
from support.prometheus_api import prometheus_api
from support.runtime_file import (
    graph_entry,
    isvc_entry,
    ready,
    standin_runtime,
    write_runtime,
)
from support.serve_page import serving_page

from controller.local.kserve_status import PredictorSpec
from controller.local.processes import free_port
from controller.local.services import MlflowService
from controller.manifests.manifest import ReleasePin, apply_release, dump_pin, load_pin

pytestmark = pytest.mark.slow

SLUICE = str(Path(sys.executable).with_name("sluice"))
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
README_IMAGE = ROOT / ".github" / "images" / "market-regime-status.png"
#: The README's image: small enough to keep in Git, wide enough for the graph's table.
WINDOW_SIZE = "1100,700"
EXAMPLE = ROOT / "models" / "market_regime" / "overlay"
REPLAY = "loadtests/payloads/market-regime-black-swan.jsonl"
OVERLAY = "manifests/overlays/local"
GRAPH_URL = "http://127.0.0.1:18300"

CLASSIFIER, CALM, VOLATILE, BLEND = (
    f"market-regime-{m}" for m in ("classifier", "calm", "volatile", "blend")
)
#: Each member's pinned version; the calm specialist's is a 50 % canary beside v1.
PINNED = {CLASSIFIER: 1, CALM: 2, VOLATILE: 1, BLEND: 1}
CANARY = {CALM: 50}
#: The step calls of 1,000 requests over the window: every request is classified, then 610
#: go to the calm specialist, 300 to the volatile one and 90 black swans to the Ensemble of
#: the classifier and both specialists, whose answer the blend weighs.
STEP_CALLS = {
    ("root", "classify", CLASSIFIER): 1000.0,
    ("by-regime", "calm", CALM): 610.0,
    ("by-regime", "volatile", VOLATILE): 300.0,
    ("blend-inputs", "classifier", CLASSIFIER): 90.0,
    ("blend-inputs", "calm", CALM): 90.0,
    ("blend-inputs", "volatile", VOLATILE): 90.0,
    ("blend", "blend", BLEND): 90.0,
}


def step_calls(query: str) -> list[tuple[dict[str, str], float]]:
    """What Prometheus answers the graph's step query with (nothing for other queries)."""
    if "sluice_graph_step" not in query or 'graph_name="market-regime"' not in query:
        return []
    return [
        ({"node_name": node, "step_name": step, "service_name": service}, calls)
        for (node, step, service), calls in STEP_CALLS.items()
    ]


def register(tracking_uri: str) -> dict[str, list[str]]:
    """Each member's versions in the registry (its source per version), its challenger alias on
    the pinned one and its champion on the one that serves, as training, `sluice propose` and
    the rollouts leave them."""
    client = MlflowClient(tracking_uri)
    sources: dict[str, list[str]] = {}
    for model, pinned in PINNED.items():
        client.create_registered_model(model)
        run = client.create_run(client.create_experiment(model)).info
        sources[model] = []
        for index in range(1, pinned + 1):
            source = f"{run.artifact_uri}/m{index}"
            client.create_model_version(model, source, run.run_id)
            sources[model].append(source)
        client.set_registered_model_alias(model, "challenger", str(pinned))
        # A canary's model keeps its champion, the version it replaces, until promoted.
        champion = pinned - 1 if model in CANARY else pinned
        client.set_registered_model_alias(model, "champion", str(champion))
    return sources


def serve_the_graph(remote: GitRemote, root: Path, sources: dict[str, list[str]]) -> str:
    """Commit the example's overlay as the local environment, each member pinned; the commit."""

    def install(tree: Path) -> None:
        overlay = tree / OVERLAY
        shutil.rmtree(overlay)
        shutil.copytree(EXAMPLE, overlay)
        (tree / REPLAY).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / REPLAY, tree / REPLAY)
        for model, version in PINNED.items():
            path = overlay / f"{model}.yaml"
            document = load_pin(path.read_text(), source=str(path))
            pin = ReleasePin(
                model=model, version=version, storage_uri=sources[model][version - 1],
                run_id=None, previous_version=version - 1 if model in CANARY else None,
                canary_percent=CANARY.get(model),
            )  # fmt: skip
            apply_release(document, pin, source=str(path))
            path.write_text(dump_pin(document))

    return commit_now(remote, root, "local: serve the market-regime graph", install)


def runtime_entries() -> tuple[dict[str, Any], dict[str, Any]]:
    """The InferenceServices and the InferenceGraph as the runtime saves them once all serve."""
    isvcs = {}
    for index, (model, version) in enumerate(PINNED.items()):
        canary = CANARY.get(model)
        annotations = {"sluice.dev/model-name": model, "sluice.dev/model-version": str(version)}
        isvcs[model] = isvc_entry(
            model,
            PredictorSpec(canary_traffic_percent=canary, enable_tag_routing=True),
            ready(model, 2 if canary else 1),
            url=f"http://127.0.0.1:{18310 + index}",
            annotations=annotations,
        )
    graph: dict[str, Any] = YAML(typ="safe").load((EXAMPLE / "inference-graph.yaml").read_text())
    graph["metadata"]["namespace"] = "models-local"
    entry = graph_entry(graph, dict.fromkeys(PINNED, True), url=GRAPH_URL)
    return isvcs, {"market-regime": entry}


class _Rows(HTMLParser):
    """The graph's table as Chromium's DOM has it: per member row, its regime (carried down a
    regime's rows, as a reader's eye does), and its cells' text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.sections: list[dict[str, str | None]] = []
        self._regime: list[str] = ["", ""]
        self._row: dict[str, Any] | None = None
        self._cell: list[str] | None = None
        self._cell_class = ""

    def handle_starttag(self, tag: str, attrs: Sequence[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section":
            self.sections.append(found)
        elif tag == "tr" and "data-member" in found:
            self._row = {"at": found["data-at"], "cells": []}
        elif tag == "td" and self._row is not None:
            self._cell, self._cell_class = [], str(found.get("class") or "")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            text = "".join(self._cell).strip()
            if self._cell_class == "regime":
                self._regime = [text, ""]
            elif self._cell_class == "share" and len(self._row["cells"]) == 0:
                self._regime[1] = text  # the regime's share, beside its name
            else:
                self._row["cells"].append(text)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append({**self._row, "regime": tuple(self._regime)})
            self._row = None


def test_the_status_page_shows_the_graph_per_regime_in_a_real_browser(
    own_mlflow: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """Chromium sees the graph's section: its router Ready, 1,000 requests, and per regime (the
    Switch's calm, volatile and black-swan steps, after the classifier every request meets)
    the members with what serves, the calm specialist's canary, each release's phase as its
    own section on the page says, and each share of the graph's requests."""
    sources = register(own_mlflow.tracking_uri)
    seed_manifests(git_remote, tmp_path / "seed")
    head = serve_the_graph(git_remote, tmp_path / "work", sources)
    state = tmp_path / "state"
    local = (state / "local").resolve()
    local.mkdir(parents=True)
    port = free_port()
    with standin_runtime(local) as pid, prometheus_api(step_calls) as prometheus:
        isvcs, graphs = runtime_entries()
        write_runtime(
            local, pid=pid, env="local", remote=git_remote.url, synced=head, isvcs=isvcs,
            graphs=graphs,
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        env.update(
            MLFLOW_TRACKING_URI=own_mlflow.tracking_uri,
            SLUICE_GIT_REMOTE=git_remote.url,
            SLUICE_STATE_DIR=str(state),
            SLUICE_PROMETHEUS_URL=prometheus.url,
            SLUICE_SERVE_PORT=str(port),
        )
        with serving_page(["--env", "local"], port=port, env=env, cwd=tmp_path) as (url, page):
            assert page.status_code == 200, page.text
            dom = chromium("--dump-dom", url)
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "status-page-graph.html").write_text(dom)
            shot = ARTIFACTS / "status-page-graph.png"
            shot.unlink(missing_ok=True)
            chromium(
                f"--screenshot={shot}", f"--window-size={WINDOW_SIZE}", "--hide-scrollbars", url
            )
    print(f"screenshot: {shot}")
    parsed = _Rows()
    parsed.feed(dom)
    (graph,) = [s for s in parsed.sections if s.get("data-graph")]
    assert (graph["data-graph"], graph["data-environment"]) == ("market-regime", "local")
    assert graph["data-router"] == "Ready"
    assert "1,000 requests routed in the last 5m" in dom
    phases = {
        s["data-model"]: s["data-phase"] for s in parsed.sections if s.get("class") == "release"
    }
    assert phases == {
        CLASSIFIER: "succeeded", CALM: "analysing", VOLATILE: "succeeded", BLEND: "succeeded"
    }  # fmt: skip
    # Per row: the regime and its share, the member where it sits, its canary and its share;
    # every member serves v1 (the calm specialist's v2 is the canary).
    black_swan = ("black-swan", "9.0%")
    shown = [
        (("any regime", "-"), CLASSIFIER, "root/classify", "-", "100%"),
        (("calm", "61%"), CALM, "by-regime/calm", "v2 50%", "61%"),
        (("volatile", "30%"), VOLATILE, "by-regime/volatile", "-", "30%"),
        (black_swan, CLASSIFIER, "blend-inputs/classifier", "-", "9.0%"),
        (black_swan, CALM, "blend-inputs/calm", "v2 50%", "9.0%"),
        (black_swan, VOLATILE, "blend-inputs/volatile", "-", "9.0%"),
        (black_swan, BLEND, "blend/blend", "-", "9.0%"),
    ]
    expected = [
        (regime, [member, at, "v1", canary, phases[member], share])
        for regime, member, at, canary, share in shown
    ]
    assert [(row["regime"], row["cells"]) for row in parsed.rows] == expected
    assert any('graph_name="market-regime"' in q for q in prometheus.queries)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SLUICE_README_IMAGE") == "1":
        shutil.copyfile(shot, README_IMAGE)
