"""The local runtime's shadow phase: Git asks for a mirror, the router copies, the log pairs.

One runtime process serves one InferenceService for the whole module, and the tests walk a
shadow phase in order (version 2 mirrored at 0 %, its server killed, a 10 % canary, a
rollback at 0 % without the annotation), each asserting what a client of the router sees and
what ``predictions.sqlite`` holds. Three model server starts in all (version 1, version 2,
version 2 again after the kill), so the module takes about 40 s; helpers are those of
``support/runtime_loop.py``, shared with ``test_local_runtime.py``.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from support.runtime_loop import (
    ISVC,
    R1,
    R2,
    Background,
    Client,
    Loop,
    running,
    serverless_manifest,
    split,
)

from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.commands.local_status import run_status
from controller.local.services import MlflowService
from controller.local.state import pid_matches
from controller.predictions import PredictionPair
from controller.settings import Settings
from controller.shadow.phase import MIRROR_PERCENT_ANNOTATION, PHASE_ANNOTATION, SHADOW_PHASE

pytestmark = pytest.mark.slow

SHADOW = {PHASE_ANNOTATION: SHADOW_PHASE, "sluice.dev/model-version": "2"}
DEADLINE = 60.0


class ShadowLoop(Loop):
    """The runtime loop of ``support/runtime_loop.py``, pushing annotated Serverless manifests."""

    def push_annotated(
        self, message: str, uri: str, canary: int | None, annotations: dict[str, str]
    ) -> str:
        """Commit ``fraud`` serving ``uri`` at ``canary`` % with ``annotations``."""
        return self.push_document(message, serverless_manifest(ISVC, uri, canary, annotations))

    @property
    def log(self) -> SqlitePredictionLog:
        """The runtime's prediction log, opened for reading."""
        return SqlitePredictionLog(self.state_dir / "predictions.sqlite")


class TracedClient(Client):
    """A client that names each request with an ``X-Request-Id`` of its own."""

    def send_traced(self, n: int) -> tuple[list[str], set[tuple[int, str]]]:
        """Send ``n`` requests; their ids and the (status, revision) answers seen."""
        ids, seen = [], set()
        body = json.dumps({"instances": [[42.0, 3]]})
        for _ in range(n):
            request_id = f"shadow-test-{uuid.uuid4().hex}"
            headers = {"X-Request-Id": request_id, "Content-Type": "application/json"}
            self.connection.request("POST", f"/v1/models/{self.model}:predict", body, headers)
            response = self.connection.getresponse()
            response.read()
            ids.append(request_id)
            seen.add((response.status, response.getheader("X-Sluice-Revision", "")))
        return ids, seen


def pairs_of(loop: ShadowLoop, ids: list[str], count: int) -> list[PredictionPair]:
    """The logged pairs of ``ids`` once ``count`` of them are committed (or at the deadline)."""
    wanted, deadline = set(ids), time.monotonic() + 15
    while True:
        pairs = [p for p in loop.log.pairs() if p.request_id in wanted]
        if len(pairs) >= count or time.monotonic() > deadline:
            return pairs
        time.sleep(0.1)


def shadow_results(url: str) -> dict[str, float]:
    """``sluice_shadow_requests_total`` of revision 2 by result, from the router's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "sluice_shadow_requests"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["revision"] == R2
    }


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def loop(
    mlflow_server: MlflowService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ShadowLoop]:
    """A runtime whose remote serves version 1; its state is where ``sluice local`` looks."""
    root = tmp_path_factory.mktemp("local-shadow")
    loop = ShadowLoop.on_new_remote(
        root, mlflow_server.tracking_uri, "shadow", state_dir=root / "sluice" / "local"
    )
    loop.push_annotated("Serve version 1", loop.uris[0], None, {})
    with running(loop):
        yield loop


def test_shadow_annotation_mirrors_requests_and_logs_pairs(loop: ShadowLoop) -> None:
    """Version 2 at 0 % with the shadow annotation gets a copy of every request, logged in pairs,
    while clients only see revision 1's answers."""
    loop.push_annotated("Shadow version 2", loop.uris[1], 0, SHADOW)
    entry = loop.wait(lambda e: e.get("shadow") is not None, "a shadow")
    assert entry["shadow"] == {"revision": R2, "percent": 100.0, "primary": R1, "version": "2"}
    assert split(entry) == {R1: 100}

    ids, seen = TracedClient(loop.url).send_traced(40)
    assert seen == {(200, R1)}
    pairs = pairs_of(loop, ids, len(ids))
    assert sorted(p.request_id for p in pairs) == sorted(ids)
    for pair in pairs:
        assert (pair.primary.revision, pair.shadow.revision) == (R1, R2)
        assert (pair.primary.status, pair.shadow.status) == (200, 200)
        assert pair.shadow.version == "2"
        assert pair.primary.inputs_digest == pair.shadow.inputs_digest
        assert pair.primary.output is not None
        assert pair.shadow.output == pair.primary.output  # both versions are the same model
    assert shadow_results(loop.url)["ok"] >= len(ids)


def test_status_table_shows_the_shadow(loop: ShadowLoop) -> None:
    """`sluice local status` has a shadow row naming revision 2, its share and the primary."""
    console = Console(record=True, width=200)
    run_status(Settings(state_dir=loop.state_dir.parent), as_json=False, console=console)
    rows = [line for line in console.export_text().splitlines() if "shadow" in line]
    assert len(rows) == 1, rows
    assert f"{R2} (100% of {R1}'s requests)" in rows[0]


def test_killed_shadow_never_fails_a_client(loop: ShadowLoop) -> None:
    """SIGKILL of the shadow's model server fails copies, never a client request; the
    runtime restarts the server and mirroring resumes."""
    old_pid = loop.state()["servers"][R2]["pid"]
    marker = str(loop.state_dir / "revisions" / R2)
    errors_before = shadow_results(loop.url).get("error", 0.0)
    with Background(loop.url) as load:
        time.sleep(0.5)
        assert pid_matches(old_pid, marker)
        os.killpg(old_pid, signal.SIGKILL)  # the server runs in a session of its own

        def restarted() -> bool:
            state = loop.state()
            server = state["servers"].get(R2, {})
            shadow = state["inferenceServices"][ISVC].get("shadow")
            return server.get("pid") not in (None, old_pid) and shadow is not None

        wait_for(restarted, f"{R2} restarted and mirrored again")
    assert set(load.seen) == {(200, R1)}, load.seen
    assert shadow_results(loop.url).get("error", 0.0) > errors_before

    ids, seen = TracedClient(loop.url).send_traced(10)
    assert seen == {(200, R1)}
    pairs = pairs_of(loop, ids, len(ids))
    assert {(p.shadow.revision, p.shadow.status) for p in pairs} == {(R2, 200)}
    assert len(pairs) == len(ids)


def test_canary_at_ten_percent_stops_the_mirror(loop: ShadowLoop) -> None:
    """The shadow annotation with canaryTrafficPercent 10 is a canary: no copies."""
    loop.push_annotated("Canary version 2 at 10%", loop.uris[1], 10, SHADOW)
    entry = loop.wait(lambda e: split(e) == {R2: 10, R1: 90}, f"{R2} at 10 %")
    assert entry["shadow"] is None


def test_rollback_without_the_annotation_is_not_mirrored(loop: ShadowLoop) -> None:
    """canaryTrafficPercent 0 without the annotation routes back to revision 1 and copies
    nothing: its answers are logged alone."""
    loop.push_annotated("Roll back version 2", loop.uris[1], 0, {MIRROR_PERCENT_ANNOTATION: "100"})
    entry = loop.wait(lambda e: split(e) == {R1: 100}, f"{R1} back at 100 %")
    assert entry["shadow"] is None
    copies = shadow_results(loop.url)

    log = loop.log
    before = log.row_count()
    ids, seen = TracedClient(loop.url).send_traced(30)
    assert seen == {(200, R1)}
    wait_for(lambda: log.row_count() >= before + len(ids), "the primary answers logged")
    time.sleep(0.5)  # a copy, had one been sent, would be logged by now
    assert log.row_count() == before + len(ids)
    assert not [p for p in log.pairs() if p.request_id in set(ids)]
    assert shadow_results(loop.url) == copies


def test_bad_mirror_percent_syncs_but_mirrors_nothing(loop: ShadowLoop) -> None:
    """A shadow with an unreadable mirror percent is applied (KServe takes any annotation) but
    mirrors nothing, and the runtime says why in its log."""
    annotations = {**SHADOW, MIRROR_PERCENT_ANNOTATION: "lots"}
    head = loop.push_annotated("Shadow version 2 again", loop.uris[1], 0, annotations)

    def synced(entry: dict[str, Any]) -> bool:
        operation = loop.state()["application"]["status"].get("operationState", {})
        return operation.get("syncResult", {}).get("revision") == head

    entry = loop.wait(synced, "the bad percent synced")
    assert entry["object"]["metadata"]["annotations"][MIRROR_PERCENT_ANNOTATION] == "lots"
    time.sleep(1.0)  # passes after the sync
    assert loop.isvc()["shadow"] is None
    assert TracedClient(loop.url).send_traced(10)[1] == {(200, R1)}
    log = (loop.state_dir / "runtime.log").read_text()
    assert f"annotation {MIRROR_PERCENT_ANNOTATION} is 'lots'" in log
