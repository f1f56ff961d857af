"""The local target reading ``runtime.json`` as the local runtime writes it.

The state files are built with the runtime's own pure pieces (KServe's status logic, Argo CD's
Application bookkeeping, Argo CD's health check) instead of running a runtime; one sleeping
process whose command line carries the runtime's markers stands in for a live runtime.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.runtime_file import NOW, isvc_entry, standin_runtime

from controller.errors import ConfigError, RemoteUnavailable
from controller.local.kserve_status import (
    PredictorSpec,
    Revision,
    RevisionState,
)
from controller.local.state import environment_dir, write_json
from controller.local.sync import (
    application_health,
    new_application,
    operation_started,
    operation_succeeded,
    set_comparison,
)
from controller.local.target import NOT_RUNNING, RUNTIME_FILE, LocalTarget
from controller.target_types import TrafficEntry

ISVC, ENV = "fraud", "local"
R1, R2 = f"{ISVC}-predictor-00001", f"{ISVC}-predictor-00002"
ROUTER = "http://127.0.0.1:18210"
SHA_1 = "1111111111111111111111111111111111111111"
SHA_2 = "2222222222222222222222222222222222222222"
REMOTE = "/srv/git/gitops.git"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state directory whose runtime pid is alive with the markers `sluice local up` uses."""
    root = tmp_path_factory.mktemp("local").resolve()
    with standin_runtime(root) as pid:
        (root / "pid").write_text(str(pid))
        yield root


def runtime_pid(state_dir: Path) -> int:
    return int((state_dir / "pid").read_text())


def inference_service(
    spec: PredictorSpec, revisions: list[Revision], passes: int = 2
) -> dict[str, Any]:
    """The runtime's entry for ISVC after ``passes`` KServe passes over ``revisions``.

    The first pass sees only the first revision with no canary percent: the first rollout.
    """
    annotations = {"sluice.dev/model-name": ISVC, "sluice.dev/model-version": "2"}
    return isvc_entry(ISVC, spec, revisions, url=ROUTER, annotations=annotations, passes=passes)


def application(*synced: str, head: str | None = None) -> dict[str, Any]:
    """The runtime's Application after syncing ``synced`` in order, then seeing ``head``."""
    app = new_application(ENV, REMOTE, "main", f"manifests/overlays/{ENV}")
    for sha in synced:
        operation_started(app, sha, NOW)
        operation_succeeded(app, sha, NOW, [ISVC])
    if head is not None:
        set_comparison(app, head)
    return app


def save(state_dir: Path, *, pid: int | None = None, **isvcs: dict[str, Any]) -> None:
    """Write ``runtime.json`` as :meth:`LocalRuntime.save` does."""
    app = application(SHA_1)
    healths = {
        name: (entry["health"]["status"], entry["health"]["message"])
        for name, entry in isvcs.items()
        if entry["health"]
    }
    application_health(app, healths)
    write_json(
        state_dir / RUNTIME_FILE,
        {
            "pid": runtime_pid(state_dir) if pid is None else pid,
            "heartbeat": NOW,
            "remote": REMOTE,
            "env": ENV,
            "application": app,
            "ports": {name: int(ROUTER.rsplit(":", 1)[1]) for name in isvcs},
            "servers": {},
            "inferenceServices": isvcs,
        },
    )


CANARY = PredictorSpec(canary_traffic_percent=10, enable_tag_routing=True)
READY = [Revision(R1, RevisionState.READY), Revision(R2, RevisionState.READY)]


def test_canary_reads_with_local_tag_routes(state_dir: Path) -> None:
    """A 10 % canary reads as on a cluster, its tags reached through the router's /_tag/ path."""
    save(state_dir, fraud=inference_service(CANARY, READY))
    observed = LocalTarget(state_dir).observe(ENV, ISVC)
    assert observed.traffic == (
        TrafficEntry(R2, 10, True, "latest", f"{ROUTER}/_tag/latest"),
        TrafficEntry(R1, 90, False, "prev", f"{ROUTER}/_tag/prev"),
    )
    assert (observed.synced_revision, observed.sync_status) == (SHA_1, "Synced")
    assert (observed.health, observed.health_message) == ("Healthy", "InferenceService is healthy.")
    assert (observed.latest_rolledout, observed.latest_ready) == (R1, R2)
    assert observed.url == ROUTER
    assert observed.namespace == "models-local"
    assert observed.configuration == f"{ISVC}-predictor"
    assert observed.annotations["sluice.dev/model-version"] == "2"


def test_tag_routes_point_at_the_router_url(state_dir: Path) -> None:
    """Tag URLs come from the router's URL even when the status carries cluster-style ones."""
    entry = inference_service(CANARY, READY)
    for target in entry["object"]["status"]["components"]["predictor"]["traffic"]:
        target["url"] = f"http://{target['tag']}-{ISVC}-predictor.models-local.example.com"
    save(state_dir, fraud=entry)
    observed = LocalTarget(state_dir).observe(ENV, ISVC)
    assert [t.url for t in observed.traffic] == [f"{ROUTER}/_tag/latest", f"{ROUTER}/_tag/prev"]


def test_failed_canary(state_dir: Path) -> None:
    """A failed revision is reported with Knative's message, Degraded as Argo CD would say."""
    failed = Revision(R2, RevisionState.FAILED, "Container failed with: no model")
    save(state_dir, fraud=inference_service(CANARY, [READY[0], failed]))
    observed = LocalTarget(state_dir).observe(ENV, ISVC)
    assert observed.failure == (
        f'Revision "{R2}" failed with message: Container failed with: no model.'
    )
    assert observed.health == "Degraded"
    assert observed.percent_of(R2) == 0


def test_out_of_sync_names_the_last_synced_commit(state_dir: Path) -> None:
    """A new tip not yet synced leaves the synced revision at the last successful sync."""
    save(state_dir, fraud=inference_service(CANARY, READY))
    document = json.loads((state_dir / RUNTIME_FILE).read_text())
    document["application"] = application(SHA_1, head=SHA_2)
    write_json(state_dir / RUNTIME_FILE, document)
    observed = LocalTarget(state_dir).observe(ENV, ISVC)
    assert (observed.sync_status, observed.synced_revision) == ("OutOfSync", SHA_1)


def test_health_computed_before_first_reconcile(state_dir: Path) -> None:
    """An entry the runtime has not judged yet gets Argo CD's check on its object."""
    entry = inference_service(CANARY, READY)
    entry["health"] = {}
    save(state_dir, fraud=entry)
    assert LocalTarget(state_dir).observe(ENV, ISVC).health == "Healthy"


def test_unknown_inference_service_does_not_exist(state_dir: Path) -> None:
    """An InferenceService the runtime has not applied is exists=False."""
    save(state_dir, fraud=inference_service(CANARY, READY))
    assert not LocalTarget(state_dir).observe(ENV, "scorer").exists


def test_other_environment_is_a_configuration_error(state_dir: Path) -> None:
    """Asking a runtime of one environment about another says how to start the right one."""
    save(state_dir, fraud=inference_service(CANARY, READY))
    with pytest.raises(ConfigError, match="sluice local up --env staging"):
        LocalTarget(state_dir).observe("staging", ISVC)


def test_a_further_environment_is_read_from_its_own_runtime(state_dir: Path) -> None:
    """A stack serving two environments (`sluice local up --env local --env production`) runs
    a runtime for each: the target reads production's from its own state directory, at 50 %
    while the first environment's canary is at 10 %, and each one's from its own file."""
    save(state_dir, fraud=inference_service(CANARY, READY))
    production = environment_dir(state_dir, "production")
    production.mkdir(parents=True, exist_ok=True)
    with standin_runtime(production) as pid:
        (production / "pid").write_text(str(pid))
        half = PredictorSpec(canary_traffic_percent=50, enable_tag_routing=True)
        save(production, fraud=inference_service(half, READY))
        document = json.loads((production / RUNTIME_FILE).read_text())
        write_json(production / RUNTIME_FILE, {**document, "env": "production"})
        target = LocalTarget(state_dir)
        assert target.observe("production", ISVC).percent_of(R2) == 50
        assert target.observe(ENV, ISVC).percent_of(R2) == 10
        with pytest.raises(ConfigError, match="--env local --env staging"):
            target.observe("staging", ISVC)  # served by neither runtime
    with pytest.raises(ConfigError, match="sluice local up --env production"):
        target.observe("production", ISVC)  # its runtime stopped: the stack serves local only


def test_missing_state_file(tmp_path: Path) -> None:
    """Without runtime.json the target says how to start it."""
    with pytest.raises(RemoteUnavailable) as caught:
        LocalTarget(tmp_path).observe(ENV, ISVC)
    assert str(caught.value) == NOT_RUNNING


def test_stale_pid_is_not_running(tmp_path: Path) -> None:
    """A state file whose runtime has exited is reported as not running, with its pid."""
    probe = subprocess.Popen([sys.executable, "-S", "-c", "pass"])
    probe.wait()
    save(tmp_path, pid=probe.pid, fraud=inference_service(CANARY, READY))
    with pytest.raises(RemoteUnavailable) as caught:
        LocalTarget(tmp_path).observe(ENV, ISVC)
    assert str(caught.value) == f"{NOT_RUNNING} (its runtime, pid {probe.pid}, has exited)"


def test_reused_pid_is_not_trusted(tmp_path: Path) -> None:
    """A live pid that is not this state directory's runtime (here, pytest) does not count."""
    save(tmp_path, pid=os.getpid(), fraud=inference_service(CANARY, READY))
    with pytest.raises(RemoteUnavailable, match="not running"):
        LocalTarget(tmp_path).observe(ENV, ISVC)


def test_state_file_is_the_runtimes() -> None:
    """The target reads the file the runtime writes (read from the source of the module that
    names it: importing it imports the model servers, a second of pandas)."""
    spec = importlib.util.find_spec("controller.local.runtime_state")
    assert spec is not None
    assert spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    assigned = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert ast.literal_eval(assigned["RUNTIME_FILE"]) == RUNTIME_FILE
