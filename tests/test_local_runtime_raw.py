"""The local runtime in RawDeployment mode: spec.canary[] splits traffic between two servers.

One runtime process serves one RawDeployment InferenceService for the whole module, and the
tests walk a canary in order (the primary alone, a 10 % canary, 0 %, promotion), each asserting
what a client of the router sees. Two model servers start in all, so the module takes about
half a minute; helpers are those of ``support/runtime_loop.py``.

The last two tests run ``sluice rollout`` on a local stack (``sluice local up``: MLflow,
Prometheus, the runtime) whose environment is in RawDeployment mode, so its gates read the
``sluice-wrapper`` metrics profile: the model servers' own ``sluice_request_duration_seconds``,
labelled per revision by the local Prometheus' scrape config. A good canary is promoted on
measured values and a canary failing 30 % of its requests is rolled back on them. The policy
is one 50 % step, 4 s intervals, 3 s load tests and no judge, to keep the stack's minute short;
helpers are those of ``support/rollout_stack.py``, shared with ``test_rollout_local.py``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.crd import status_errors
from support.gitrepo import git
from support.registry import register_version
from support.rollout_stack import MODEL, PIN, faulty, serving_stack, set_policy
from support.rollout_stack import Loop as RolloutLoop
from support.runtime_loop import (
    ISVC,
    R1,
    R2,
    Background,
    Client,
    Loop,
    predictor,
    running,
    split,
    within_binomial,
)

from controller.local.services import MlflowService

pytestmark = pytest.mark.slow


class RawLoop(Loop):
    """The runtime loop of ``support/runtime_loop.py``, pushing RawDeployment manifests; it
    keeps every status it reads in ``statuses``, checked against the CRD at the end."""

    def push_raw(
        self, message: str, primary: str, *, name: str = "", canary: tuple[str, int] | None = None
    ) -> str:
        """Commit ``fraud`` serving ``primary`` (named ``name``) and the canary (uri, percent)."""
        model = {"modelFormat": {"name": "mlflow"}, "storageUri": primary}
        spec: dict[str, Any] = {"predictor": {"model": model} | ({"name": name} if name else {})}
        if canary is not None:
            uri, percent = canary
            canary_model = {"name": "kserve-container", **model, "storageUri": uri}
            spec["canary"] = [
                {"trafficPercent": percent, "predictor": {"name": "v2", "model": canary_model}}
            ]
        document = {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": ISVC,
                "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
            },
            "spec": spec,
        }
        return self.push_document(message, document)


@pytest.fixture(scope="module")
def loop(
    mlflow_server: MlflowService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RawLoop]:
    """A runtime syncing a remote whose RawDeployment overlay serves version 1."""
    root = tmp_path_factory.mktemp("local-runtime-raw")
    loop = RawLoop.on_new_remote(root, mlflow_server.tracking_uri, "raw")
    loop.push_raw("Serve version 1", loop.uris[0])
    with running(loop):
        yield loop


def test_primary_alone_serves_everything(loop: RawLoop) -> None:
    """Without spec.canary the primary's revision serves every request, Healthy."""
    entry = loop.wait(lambda e: e["health"]["status"] == "Healthy", "a Healthy InferenceService")
    assert entry["object"]["status"]["deploymentMode"] == "RawDeployment"
    assert Client(loop.url).sample(50) == {(200, R1): 50}


def test_canary_gets_its_percent_within_binomial_bounds(loop: RawLoop) -> None:
    """A 10 % canary beside the primary serves 10 % of 400 requests within 4 sigma."""
    loop.push_raw("Canary version 2 at 10%", loop.uris[0], canary=(loop.uris[1], 10))
    entry = loop.wait(lambda e: split(e) == {R2: 10, R1: 90}, f"{R2} at 10 %")
    assert (predictor(entry)["latestCreatedRevision"], predictor(entry)["latestReadyRevision"]) == (
        R2,
        R2,
    )
    (canary,) = entry["object"]["status"]["canaryStatuses"]
    assert (canary["name"], canary["ready"], canary["trafficPercent"]) == ("v2", True, 10)
    seen = Client(loop.url).sample(400)
    assert set(seen) == {(200, R1), (200, R2)}
    assert within_binomial(seen[(200, R2)], 400, 0.1), seen


def test_tag_routes_reach_the_canary_and_the_primary_alone(loop: RawLoop) -> None:
    """/_tag/latest reaches the canary's server and /_tag/prev the primary's, every time."""
    client = Client(loop.url)
    for tag, revision in (("latest", R2), ("prev", R1)):
        path = f"/_tag/{tag}/v1/models/{ISVC}:predict"
        for _ in range(20):
            client.connection.request("POST", path, json.dumps({"instances": [[42.0, 3]]}))
            response = client.connection.getresponse()
            response.read()
            assert (response.status, response.getheader("X-Sluice-Revision")) == (200, revision)


def test_zero_percent_sends_everything_to_the_primary(loop: RawLoop) -> None:
    """trafficPercent 0 routes every request to the primary; the canary keeps its server."""
    servers = loop.state()["servers"]
    loop.push_raw("Canary version 2 at 0%", loop.uris[0], canary=(loop.uris[1], 0))
    loop.wait(lambda e: split(e) == {R1: 100}, f"{R1} back at 100 %")
    assert Client(loop.url).sample(200) == {(200, R1): 200}
    assert loop.state()["servers"] == servers  # no new revision, no restart


def test_promotion_moves_all_traffic_to_the_canarys_server(loop: RawLoop) -> None:
    """Promotion keeps the canary's revision and server, retires the primary, fails nothing."""
    canary_server = loop.state()["servers"][R2]
    with Background(loop.url) as load:
        loop.push_raw("Canary version 2 at 50%", loop.uris[0], canary=(loop.uris[1], 50))
        loop.wait(lambda e: split(e) == {R2: 50, R1: 50}, f"{R2} at 50 %")
        loop.push_raw("Promote version 2", loop.uris[1], name="v2")
        entry = loop.wait(
            lambda e: split(e) == {R2: 100} and R1 not in loop.state()["servers"],
            f"{R2} promoted and {R1} retired",
        )
        time.sleep(0.5)
    assert {status for status, _ in load.seen} == {200}, load.seen
    assert loop.state()["servers"] == {R2: canary_server}
    assert "canaryStatuses" not in entry["object"]["status"]
    assert Client(loop.url).sample(100) == {(200, R2): 100}


def test_every_status_seen_fits_the_crd(loop: RawLoop) -> None:
    """Every RawDeployment status the runtime wrote validates against KServe's CRD."""
    assert len(loop.statuses) > 4
    for status in loop.statuses:
        errors = status_errors(status)
        assert not errors, errors


# -- sluice rollout, judged on the serving wrapper's metrics ---------------------------------------


def raw_policy(tree: Path) -> None:
    """The local environment in RawDeployment mode (so the sluice-wrapper profile), with one
    50 % step, short intervals and load tests, and no judge."""
    path = tree / "manifests" / "overlays" / "local" / "sluice.yaml"
    text = path.read_text()
    for old, new in (
        ("deploymentMode: Serverless", "deploymentMode: RawDeployment"),
        ("steps: [10, 50, 100]", "steps: [50, 100]"),
        ("interval: 8", "interval: 4"),
        ("  gates:\n", "  gates:\n    judgeEnabled: false\n"),
        ("duration: 5", "duration: 3"),
        ("minRequests: 50", "minRequests: 30"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RolloutLoop]:
    """A local stack serving v1 in RawDeployment mode, with clients sending it traffic."""
    root = tmp_path_factory.mktemp("rollout-raw")
    with serving_stack(root, raw_policy, "RawDeployment and a quick policy") as loop:
        done = loop.rollout()
        assert done.returncode == 0, done.stdout + done.stderr  # v1 alone: the champion
        yield loop


def gate_line(body: str, gate: str) -> str:
    (line,) = [line for line in body.splitlines() if f"] {gate}" in line]
    return line


def test_raw_canary_is_promoted_on_the_wrappers_measured_metrics(stack: RolloutLoop) -> None:
    """v2 is proposed as spec.canary at trafficPercent 0 for the smoke (on by default), passes
    it on the canary Deployment's tag route, canaries at 50 % beside v1 and is promoted; the
    promotion commit lists both Prometheus checks passing with the values measured from the
    model servers' series."""
    version = register_version(stack.tracking_uri, MODEL, input_example=True)
    stack.propose_and_merge(version)
    assert stack.pin() == (version, 0)
    pin = git("show", f"main:{PIN}", cwd=stack.remote.path)
    assert "sluice.dev/phase: smoke" in pin
    assert "  canary:\n    - trafficPercent: 0\n" in pin, pin
    assert "canaryTrafficPercent" not in pin
    done = stack.rollout()
    assert done.returncode == 0, done.stdout + done.stderr
    assert stack.pin() == (version, None)
    subjects = stack.subjects()
    assert subjects[0].startswith(f"fraud-detector v{version}: canary 50% → 100%, promoted")
    assert subjects[1] == f"fraud-detector v{version}: smoke passed, canary 50% (local)"
    smoke = git("log", "-1", "--format=%B", "main~1", cwd=stack.remote.path)
    assert "- [pass] smoke: 0 of 50 requests to the new revision failed" in smoke, smoke
    body = git("log", "-1", "--format=%B", "main", cwd=stack.remote.path)
    for gate in ("prometheus/request-success-rate", "prometheus/request-latency"):
        line = gate_line(body, gate)
        assert line.startswith("- [pass]"), body
        assert "no data" not in line, line
        assert re.search(r"\d", line), line
    assert "100" in gate_line(body, "prometheus/request-success-rate")
    assert stack.traffic.failures() == 0


def test_failing_raw_canary_is_rolled_back_on_the_wrappers_metrics(stack: RolloutLoop) -> None:
    """A version failing 30 % of its requests is rolled back at its step on its own model
    server's 5xx count: by the sequential watch between analyses (usually first) or by the
    success-rate check, each reading the wrapper's per-revision series."""
    serving = stack.pin()[0]
    # The smoke (on by default) would stop this version at 0 %, before the wrapper's series
    # count a client request; this test is about those series, so it is off here.
    set_policy(stack, "no-smoke", smoke="{enabled: false}")
    version = faulty(stack, error_rate=0.3, latency_ms=0)  # type: ignore[arg-type]
    stack.propose_and_merge(version)
    assert stack.pin() == (version, 50)
    done = stack.rollout()
    assert done.returncode == 1, done.stdout + done.stderr
    assert stack.pin() == (serving, None)
    subjects = stack.subjects()
    assert subjects[0] == f"rollback fraud-detector v{version}: restore v{serving} (local)"
    assert (
        subjects[1] == f"rollback fraud-detector v{version}: all traffic back to v{serving} (local)"
    )
    body = git("log", "-1", "--format=%B", "main~1", cwd=stack.remote.path)
    if "] watch" in body:
        line = gate_line(body, "watch")
        assert line.startswith("- [FAIL]"), body
        rate = re.search(r"errors in [\d,]+ requests since the step \((\d+(?:\.\d+)?)%\)", line)
        assert rate is not None, line
        assert float(rate.group(1)) > 5, line  # measured, not assumed: about 30 %
        return
    line = gate_line(body, "prometheus/request-success-rate")
    assert line.startswith("- [FAIL]"), body
    measured = re.search(r"(\d+(?:\.\d+)?)\s*%", line)
    assert measured is not None, line
    assert float(measured.group(1)) < 99, line
