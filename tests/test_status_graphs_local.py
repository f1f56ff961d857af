"""`sluice status` as the README shows it, against a real local runtime serving a graph.

The GitOps remote's ``local`` overlay holds two releases (a calm and a volatile specialist,
each a real model server of a registered version) and an InferenceGraph that switches on the
request's regime: calm and volatile rows go to their specialist, black swans to an Ensemble
of both. Prometheus scrapes the graph's router. After two batches of 10 requests (6 calm, 3
volatile, 1 black swan), ``sluice status --env local`` shows the graph's section: each member
where it sits, its release's version and phase, and its share of the graph's requests per regime.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.gitops_repo import commit_to_remote
from support.gitrepo import create_git_remote
from support.runtime_loop import DEADLINE, KUSTOMIZATION, OVERLAY, Loop, register_uris

from controller.backends.prometheus import PrometheusSource
from controller.local.services import MlflowService, PrometheusService

pytestmark = pytest.mark.slow

SLUICE = str(Path(sys.executable).with_name("sluice"))
MEMBERS = ("calm", "volatile")
#: Each regime's Switch step and where it goes.
REGIMES = {
    "calm": {"serviceName": "calm"},
    "volatile": {"serviceName": "volatile"},
    "black-swan": {"nodeName": "both-specialists"},
}
GRAPH = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "InferenceGraph",
    "metadata": {"name": "market-regime"},
    "spec": {
        "nodes": {
            "root": {
                "routerType": "Switch",
                "steps": [
                    {"name": regime, **target, "condition": f'[@this].#(regime=="{regime}")'}
                    for regime, target in REGIMES.items()
                ],
            },
            "both-specialists": {
                "routerType": "Ensemble",
                "steps": [{"name": m, "serviceName": m} for m in MEMBERS],
            },
        }
    },
}
#: A batch of requests: 60 % calm, 30 % volatile, 10 % black swans.
BATCH = ["calm"] * 6 + ["volatile"] * 3 + ["black-swan"]


def environment(models: dict[str, str]) -> str:
    """The overlay's ``sluice.yaml``: one release per member, named ``models[member]``."""
    releases = "".join(
        f"  - {{model: {model}, inferenceService: {member}, pin: {member}.yaml}}\n"
        for member, model in models.items()
    )
    return (
        "apiVersion: sluice.dev/v1alpha1\nkind: Environment\nname: local\n"
        "storage: {allowedSchemes: [mlflow-artifacts, file]}\n"
        f"releases:\n{releases}"
    )


def pin(member: str, model: str, uri: str) -> dict[str, Any]:
    """The member's InferenceService pinned to v1 of ``model``, as a proposal writes it."""
    annotations = {"sluice.dev/model-name": model, "sluice.dev/model-version": "1"}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": member, "annotations": annotations},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "mlflow"}, "storageUri": uri}}},
    }


def post(url: str, regime: str) -> int:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = {"regime": regime, "instances": [[42.0, 3]]}
    connection.request("POST", "/", json.dumps(body).encode())
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def wait_for(check: Callable[[], bool], what: str, loop: Loop) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert loop.process is not None
        assert loop.process.alive, loop.process.log_tail()
        if time.monotonic() > deadline:
            pytest.fail(f"never saw {what}")
        time.sleep(0.2)


def test_sluice_status_shows_the_graph_its_members_versions_phases_and_shares(
    mlflow_server: MlflowService,
    prometheus_server: Callable[..., PrometheusService],
    tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    models = {member: f"{member}-{suffix}" for member in MEMBERS}
    uris = {
        member: register_uris(mlflow_server.tracking_uri, m, 1)[0] for member, m in models.items()
    }
    state = tmp_path / "sluice"
    loop = Loop(
        create_git_remote(tmp_path), state / "local", tmp_path / "work", list(uris.values()),
        mlflow_server.tracking_uri,
    )  # fmt: skip

    def overlay(tree: Path) -> None:
        directory = tree / OVERLAY
        directory.mkdir(parents=True, exist_ok=True)
        documents = {m: pin(m, models[m], uris[m]) for m in MEMBERS} | {"graph": GRAPH}
        for name, document in documents.items():
            (directory / f"{name}.yaml").write_text(json.dumps(document, indent=2))
        (directory / "sluice.yaml").write_text(environment(models))
        resources = "".join(f"  - {name}.yaml\n" for name in documents)
        (directory / "kustomization.yaml").write_text(KUSTOMIZATION + resources)

    commit_to_remote(loop.remote, loop.workdir, "Serve the specialists and their graph", overlay)
    loop.start(poll_interval=0.5)
    try:

        def graph() -> dict[str, Any]:
            return dict((loop.state().get("inferenceGraphs") or {}).get("market-regime") or {})

        wait_for(lambda: graph().get("health", {}).get("status") == "Healthy", "it Healthy", loop)
        url = str(graph()["url"])
        # A batch before Prometheus starts: its first scrape sees every series at its whole
        # first batch (increase() cannot see what a counter held at its first scrape), and
        # each series' first value over its increase is then alike, and so is the way
        # increase() extrapolates each: the shares are the batch's.
        for regime in BATCH:
            assert post(url, regime) == 200
        prometheus = prometheus_server(scrape_targets={"graph": [url.removeprefix("http://")]})
        source = PrometheusSource(prometheus.url)

        def counted() -> float:
            found = source.query("sum(sluice_graph_step_duration_seconds_count)")
            return found[0].value if found else 0.0

        # A batch is 11 calls: the Ensemble calls both members.
        wait_for(lambda: counted() == 11, "the first batch in Prometheus", loop)
        for regime in BATCH:
            assert post(url, regime) == 200
        wait_for(lambda: counted() == 22, "the second batch in Prometheus", loop)
        source.close()

        env = {
            **os.environ,
            "SLUICE_STATE_DIR": str(state),
            "SLUICE_GIT_REMOTE": loop.remote.url,
            "SLUICE_PROMETHEUS_URL": prometheus.url,
            "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
            "COLUMNS": "120",
        }

        def sluice(*args: str) -> str:
            done = subprocess.run(
                [SLUICE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        document = json.loads(sluice("status", "--env", "local", "--json"))
        phases = {r["model"]: r["phase"] for r in document["releases"]}
        (section,) = document["graphs"]
        assert section["name"] == "market-regime"
        # increase() extrapolates to the window's edges: on series a few seconds old, well
        # past the batch's 10 (the shares are the batch's: see the first batch above).
        assert section["requests"] >= 10, section
        members = {m["at"]: m for m in section["members"]}
        assert list(members) == [
            "root/calm", "root/volatile", "both-specialists/calm", "both-specialists/volatile"
        ]  # fmt: skip
        expected = {"root/calm": 0.6, "root/volatile": 0.3}
        expected |= {"both-specialists/calm": 0.1, "both-specialists/volatile": 0.1}
        for at, member in members.items():
            member_name = member["inferenceService"]
            assert member["model"] == models[member_name]
            assert (member["version"], member["serving"]) == (1, "v1")
            assert member["phase"] == phases[models[member_name]]
            assert member["share"] == pytest.approx(expected[at], abs=0.03), at
        assert members["both-specialists/calm"]["regime"] == {"node": "root", "step": "black-swan"}
        assert section["notes"] == []

        text = sluice("status", "--env", "local")
        assert "InferenceGraph market-regime in local:" in text
        lines = {
            line.split("│")[2].strip(): line for line in text.splitlines() if line.count("│") == 8
        }
        assert set(lines) >= set(members)
        calm = [cell.strip() for cell in lines["both-specialists/calm"].split("│")[1:-1]]
        assert calm[:4] == ["calm", "both-specialists/calm", "black-swan", "v1"]
        assert calm[5:] == [phases[models["calm"]], "10%"]
        assert (
            "market-regime in local: regimes: root/calm 60%, root/volatile 30%, root/black-swan 10%"
            in text
        )
    finally:
        assert loop.process is not None
        loop.process.stop()
