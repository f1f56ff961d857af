"""`sluice local status` shows each InferenceGraph the runtime saved, as a table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from controller.commands.local_status import run_status
from controller.local.state import write_json
from controller.settings import Settings

GRAPH = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "InferenceGraph",
    "metadata": {"name": "market-regime", "namespace": "models-local", "generation": 1},
    "spec": {
        "nodes": {
            "root": {
                "routerType": "Switch",
                "steps": [
                    {"serviceName": "calm", "condition": 'instances.#(regime=="calm")'},
                    {"serviceName": "volatile", "condition": 'instances.#(regime!="calm")'},
                ],
            }
        }
    },
    "status": {"conditions": [{"type": "Ready", "status": "True"}], "url": "http://127.0.0.1:7"},
}


def save(state_dir: Path, entry: dict[str, Any]) -> None:
    app = {
        "status": {
            "sync": {"status": "Synced", "revision": "abcdef1234"},
            "resources": [
                {"kind": "InferenceService", "name": "market-regime", "status": "OutOfSync"},
                {"kind": "InferenceGraph", "name": "market-regime", "status": "Synced"},
            ],
        }
    }
    runtime = {"env": "local", "application": app, "inferenceGraphs": {"market-regime": entry}}
    write_json(state_dir / "local" / "runtime.json", runtime)


def test_status_table_shows_a_graph_its_health_services_and_url(tmp_path: Path) -> None:
    """One table per graph: its own sync status, health, nodes, services and URL."""
    save(
        tmp_path,
        {"object": GRAPH, "health": {"status": "Healthy"}, "url": "http://127.0.0.1:7"},
    )
    console = Console(record=True, width=200)
    run_status(Settings(state_dir=tmp_path), as_json=False, console=console)
    text = console.export_text()
    rows = {
        cells[0]: cells[1]
        for line in text.splitlines()
        if len(cells := [c.strip() for c in line.strip("│").split("│")]) == 2
    }
    assert "InferenceGraph market-regime" in text
    assert rows["sync"] == "Synced abcdef1"  # the graph's resource, not the isvc's of its name
    assert rows["health"] == "Healthy"
    assert rows["nodes"] == "root (Switch)"
    assert rows["services"] == "calm, volatile"
    assert rows["url"] == "http://127.0.0.1:7"


def test_status_json_lists_the_graph_objects(tmp_path: Path) -> None:
    """``--json`` has ``inferenceGraphs``: the objects as the Kubernetes API returns them."""
    save(tmp_path, {"object": GRAPH, "health": {"status": "Healthy"}, "url": None})
    console = Console(record=True, width=200)
    run_status(Settings(state_dir=tmp_path), as_json=True, console=console)
    assert json.loads(console.export_text())["inferenceGraphs"] == [GRAPH]
