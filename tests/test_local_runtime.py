"""The local runtime: Argo CD-style sync, KServe revisions and canary traffic, with real servers.

One runtime process serves one InferenceService from a bare Git remote for the whole module;
the tests walk a rollout in order (first rollout, a second InferenceService added and pruned,
10 % canary, 0 %, promotion, a broken revision, a killed runtime), each asserting what a
client of the router sees.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support.crd import status_errors
from support.gitrepo import create_git_remote
from support.runtime_loop import (
    DEADLINE,
    ISVC,
    Background,
    Client,
    Loop,
    predictor,
    register_uris,
    split,
    within_binomial,
)

from controller.local.services import MlflowService
from controller.local.state import pid_matches
from controller.local.target import LocalTarget

pytestmark = pytest.mark.slow

R1, R2, R3 = (f"{ISVC}-predictor-0000{k}" for k in (1, 2, 3))
OTHER = "scorer"  # a second InferenceService, added and then pruned


@pytest.fixture(scope="module")
def loop(mlflow_server: MlflowService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    """A runtime syncing a remote whose local overlay pins version 1 of a fresh model."""
    root = tmp_path_factory.mktemp("local-runtime")
    uris = register_uris(mlflow_server.tracking_uri, f"runtime-{uuid.uuid4().hex[:8]}")
    loop = Loop(
        create_git_remote(root), root / "state", root / "work", uris, mlflow_server.tracking_uri
    )
    pushed = time.monotonic()
    loop.push("Serve version 1", uris[0])
    loop.start()
    loop.wait(lambda e: split(e) == {R1: 100}, f"{R1} at 100 %")
    loop.timings["first rollout"] = time.monotonic() - pushed
    try:
        yield loop
    finally:
        if loop.process is not None:
            loop.process.stop()
        print(f"\nlocal runtime timings: {loop.timings}")


def test_first_sync_serves_everything_from_revision_one(loop: Loop) -> None:
    """After the first sync every request is served by revision 1, with 200."""
    assert Client(loop.url).sample(100) == {(200, R1): 100}


def test_application_records_the_synced_commit(loop: Loop) -> None:
    """The Application is Synced and Healthy at the remote's tip, with one history entry."""
    head = loop.remote.head()
    loop.wait(lambda e: e["health"]["status"] == "Healthy", "a Healthy InferenceService")
    app = loop.state()["application"]["status"]
    assert app["sync"]["status"] == "Synced"
    assert app["sync"]["revision"] == head
    assert app["operationState"]["phase"] == "Succeeded"
    assert app["health"]["status"] == "Healthy"
    assert [entry["revision"] for entry in app["history"]] == [head]


def scrape_jobs(loop: Loop) -> dict[str, list[dict[str, Any]]]:
    """The static_configs of each job in the Prometheus config the runtime wrote."""
    config = json.loads(loop.scrape_config.read_text())
    return {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}


def test_scrape_config_names_router_and_server_and_idle_passes_keep_it(loop: Loop) -> None:
    """The scrape config lists the router and revision 1's labelled server; idle passes keep it."""
    state = loop.state()
    router_port = state["inferenceServices"][ISVC]["url"].rsplit(":", 1)[1]
    server_port = state["servers"][R1]["port"]
    assert scrape_jobs(loop) == {
        "sluice-routers": [{"targets": [f"127.0.0.1:{router_port}"]}],
        "kserve-model-servers": [
            {
                "targets": [f"127.0.0.1:{server_port}"],
                "labels": {
                    "revision_name": R1,
                    "configuration_name": f"{ISVC}-predictor",
                    "namespace_name": "models-local",
                },
            }
        ],
    }
    before = loop.scrape_config.stat()
    passes, deadline = {loop.state()["heartbeat"]}, time.monotonic() + DEADLINE
    while len(passes) < 3:  # two more passes (each saves a new heartbeat), nothing to change
        assert time.monotonic() < deadline, "the runtime stopped passing"
        time.sleep(0.2)
        passes.add(loop.state()["heartbeat"])
    after = loop.scrape_config.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_isvc_removed_from_git_is_pruned_and_the_other_keeps_serving(loop: Loop) -> None:
    """An InferenceService dropped from the overlay loses its router, servers and state entry."""
    other_r1 = f"{OTHER}-predictor-00001"
    loop.push("Serve a second model", loop.uris[0], others={OTHER: loop.uris[0]})
    entry = loop.wait(lambda e: split(e) == {other_r1: 100}, f"{other_r1} at 100 %", name=OTHER)
    other_url, servers = entry["url"], loop.state()["servers"]
    assert Client(other_url, model=OTHER).send() == (200, other_r1)
    other_servers = {r: info for r, info in servers.items() if r.startswith(f"{OTHER}-")}
    assert set(other_servers) == {other_r1}
    assert {t["labels"]["revision_name"] for t in scrape_jobs(loop)["kserve-model-servers"]} == {
        R1,
        other_r1,
    }

    pushed = time.monotonic()
    head = loop.push("Stop serving the second model", loop.uris[0])
    deadline = time.monotonic() + DEADLINE
    while OTHER in loop.state().get("inferenceServices", {}):
        assert time.monotonic() < deadline, f"{OTHER} was never pruned"
        time.sleep(0.2)
    loop.timings["prune"] = time.monotonic() - pushed
    with pytest.raises(ConnectionRefusedError):
        Client(other_url, model=OTHER).send()
    for revision, info in other_servers.items():
        marker = str(loop.state_dir / "revisions" / revision)
        assert not pid_matches(info["pid"], marker), f"{revision}'s server still runs"
    state = loop.state()
    assert not [r for r in state["servers"] if r.startswith(f"{OTHER}-")]
    assert state["application"]["status"]["sync"]["revision"] == head
    jobs = scrape_jobs(loop)
    assert [t["labels"]["revision_name"] for t in jobs["kserve-model-servers"]] == [R1]
    assert jobs["sluice-routers"] == [{"targets": [loop.url.removeprefix("http://")]}]
    assert Client(loop.url).sample(50) == {(200, R1): 50}


def test_canary_gets_its_percent_within_binomial_bounds(loop: Loop) -> None:
    """A new version at canaryTrafficPercent 10 serves 10 % of 400 requests within 4 sigma."""
    pushed = time.monotonic()
    loop.push("Canary version 2 at 10%", loop.uris[1], canary=10)
    loop.wait(lambda e: split(e) == {R2: 10, R1: 90}, f"{R2} at 10 %")
    loop.timings["new revision to 10 %"] = time.monotonic() - pushed
    seen = Client(loop.url).sample(400)
    assert set(seen) == {(200, R1), (200, R2)}
    assert within_binomial(seen[(200, R2)], 400, 0.1), seen


def test_the_router_counts_each_revisions_answers_live(loop: Loop) -> None:
    """What the sequential watch reads through the local target: every answer of each revision
    since a time, by code, as the router counted it (no Prometheus scrape in between)."""
    since = math.ceil(time.time())
    time.sleep(since - time.time())  # counts start at a whole second: none of the last test's
    seen = Client(loop.url).sample(200)
    counts = LocalTarget(loop.state_dir).request_counts("local", ISVC, since)
    assert counts == {revision: {200: n} for (_, revision), n in seen.items()}


def test_canary_at_zero_sends_everything_back(loop: Loop) -> None:
    """canaryTrafficPercent 0 routes every request to the rolled-out revision again."""
    pushed = time.monotonic()
    loop.push("Canary version 2 at 0%", loop.uris[1], canary=0)
    loop.wait(lambda e: split(e) == {R1: 100}, f"{R1} back at 100 %")
    loop.timings["percent-only change"] = time.monotonic() - pushed
    assert predictor(loop.isvc())["latestCreatedRevision"] == R2  # no new revision
    assert Client(loop.url).sample(200) == {(200, R1): 200}


def test_promotion_moves_all_traffic_without_an_error(loop: Loop) -> None:
    """Removing canaryTrafficPercent promotes revision 2, and no request fails meanwhile."""
    with Background(loop.url) as load:
        loop.push("Promote version 2", loop.uris[1])
        entry = loop.wait(
            lambda e: split(e) == {R2: 100} and predictor(e).get("latestRolledoutRevision") == R2,
            f"{R2} rolled out",
        )
        time.sleep(0.5)  # the router applies the split within the same pass
    assert predictor(entry)["previousRolledoutRevision"] == R1
    assert {status for status, _ in load.seen} == {200}, load.seen
    assert Client(loop.url).sample(100) == {(200, R2): 100}


def test_revision_that_cannot_load_is_degraded_and_never_routed(loop: Loop) -> None:
    """A bad storageUri makes a failed revision: Degraded, and revision 2 keeps every request."""
    bad = (loop.state_dir.parent / "no-such-model").as_uri()
    with Background(loop.url) as load:
        loop.push("Serve a model that does not exist", bad)
        entry = loop.wait(lambda e: e["health"]["status"] == "Degraded", "a Degraded health")
    status = entry["object"]["status"]
    assert status["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert predictor(entry)["latestCreatedRevision"] == R3
    assert split(entry) == {R2: 100}
    assert set(load.seen) == {(200, R2)}, load.seen
    assert loop.state()["application"]["status"]["health"]["status"] == "Degraded"


def test_killed_runtime_resumes_serving_the_synced_revision(loop: Loop) -> None:
    """After SIGKILL, a new runtime serves revision 2 on the same port; old servers are gone."""
    assert loop.process is not None
    before = loop.state()
    url, old_servers = before["inferenceServices"][ISVC]["url"], before["servers"]
    os.kill(loop.process.pid, signal.SIGKILL)
    loop.process.stop()
    killed = time.monotonic()
    loop.start()
    loop.wait(
        lambda e: e["url"] == url and loop.state().get("pid") == loop.process.pid,  # type: ignore[union-attr]
        "the restarted runtime",
    )
    deadline = time.monotonic() + DEADLINE
    while Client(url).send()[0] != 200:
        assert time.monotonic() < deadline, "the restarted runtime never served"
        time.sleep(0.2)
    loop.timings["kill to serving again"] = time.monotonic() - killed
    assert Client(url).sample(100) == {(200, R2): 100}
    for revision, info in old_servers.items():
        marker = str(loop.state_dir / "revisions" / revision)
        assert not pid_matches(info["pid"], marker), f"{revision}'s old server still runs"


def test_a_sync_request_syncs_a_new_commit_without_waiting_for_the_poll(loop: Loop) -> None:
    """The controller asks the runtime to sync after each commit it pushes (SIGUSR1, as a Git
    webhook makes Argo CD refresh): with an hour between polls, the commit still syncs."""
    assert loop.process is not None
    loop.process.stop()
    loop.start(poll_interval=3600)
    loop.wait(lambda e: loop.state().get("pid") == loop.process.pid, "the restarted runtime")  # type: ignore[union-attr]
    # The restarted runtime polled once, before the push; its next poll is an hour away.
    head = loop.push("Canary version 2 again, at 0%", loop.uris[1], canary=0)
    LocalTarget(loop.state_dir).request_sync("local")
    loop.wait(
        lambda _: loop.state()["application"]["status"]["sync"]["revision"] == head,
        "the pushed commit synced",
    )
    assert loop.process.alive


def test_every_status_seen_fits_the_crd(loop: Loop) -> None:
    """Every InferenceService status the runtime wrote validates against KServe's CRD."""
    assert len(loop.statuses) > 5
    for status in loop.statuses:
        errors = status_errors(status)
        assert not errors, errors
