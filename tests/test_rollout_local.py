"""Rollouts end to end on the local target: real MLflow, Git, model servers, Prometheus, Locust.

A user's view: a proposal is merged, `sluice rollout` runs, and Git, the registry and the
traffic say what happened. The shipped local policy leaves the pre-traffic smoke at its default,
on: every proposal pins the new version at weight 0 and `sluice rollout` smokes its tag route
before a client sees it. A version that answers 300 ms slower passes the smoke and is rolled
back at its first step and quarantined; a good one passes the smoke, is held while Prometheus
is down and aborted (not quarantined) when it stays down, then promoted step by step when
proposed again with Prometheus back; one
that fails a fifth of its requests never gets past the smoke. `make demo` (tests/test_demo.py) walks
a good version to champion and rolls back one failing a fifth of its requests. Last, issue #18's
tamper story: with the environment requiring signed provenance, a signed version whose model.pkl
is overwritten in the artifact store while its canary serves is rolled back at the next
verification and quarantined (the reconciler-level cases are tests/test_provenance_rollout.py).

The demo runs the default metrics profile (current Knative's OpenTelemetry names); this module
runs the other builtin one, ``knative-opencensus`` (Knative 1.18's), so a good canary is
promoted and a bad one rolled back under each: the local router exports what the policy in
Git names, and the gates query the same.
"""

from __future__ import annotations

import pickle
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from support.gitops_repo import commit_to_remote
from support.gitrepo import git
from support.registry import register_version
from support.rollout_stack import (
    MODEL,
    PIN,
    Loop,
    faulty,
    quick_policy,
    serving_stack,
    set_policy,
    wait_for,
)
from support.signed_model import BUILDERS, sign_version

from controller.cli import main
from controller.local.state import read_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    """The local stack serving v1 of a small model, with clients sending it traffic."""
    root = tmp_path_factory.mktemp("rollout")
    with serving_stack(root, quick_policy, "A quicker rollout policy for tests") as loop:
        yield loop


def test_first_version_becomes_champion(loop: Loop) -> None:
    """The first version takes all traffic without a canary and becomes the champion."""
    done = loop.rollout()
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        MlflowClient(loop.tracking_uri).get_model_version_by_alias(MODEL, "champion").version == "1"
    )


def assert_rolled_back(loop: Loop, version: int) -> None:
    subjects = loop.subjects()
    assert subjects[:3] == [
        f"rollback fraud-detector v{version}: v1 serves alone again (local)",
        f"rollback fraud-detector v{version}: restore v1 (local)",
        f"rollback fraud-detector v{version}: all traffic back to v1 (local)",
    ]
    assert loop.pin() == (1, None)
    tags = MlflowClient(loop.tracking_uri).get_model_version(MODEL, str(version)).tags
    assert "sluice.quarantined" in tags


def test_slow_version_is_rolled_back_on_latency(loop: Loop) -> None:
    """A version 300 ms slower than the primary answers every request of the smoke (it judges
    errors, not latency), so it takes its first step, and is rolled back there."""
    version = faulty(loop, error_rate=0.0, latency_ms=300)
    loop.propose_and_merge(version)
    done = loop.rollout()
    assert done.returncode == 1, done.stdout + done.stderr
    assert_rolled_back(loop, version)
    assert loop.subjects()[3] == f"fraud-detector v{version}: smoke passed, canary 10% (local)"
    reason = git("log", "-1", "--format=%B", "main~2", cwd=loop.remote.path)
    assert "latency" in reason


def test_prometheus_outage_holds_then_aborts_and_the_version_proceeds_when_proposed_again(
    loop: Loop,
) -> None:
    """The default smoke, through the CLI and the shipped local policy, around a Prometheus
    outage. The proposal pins the good version at weight 0 in the smoke phase; `sluice rollout`
    smokes its tag route (Prometheus is not needed) and one commit starts the canary. With
    Prometheus down the canary holds at 10 % on a tool error, and after errorLimit analyses (2
    here, to spend fewer load tests on a known outcome) the rollout is aborted: traffic goes
    back, but a broken tool condemns no model, so the version is not quarantined and the
    registry says the rollout was aborted. Proposed again with Prometheus back (`sluice local
    up` restarts it), the same version is smoked before any client request reaches it and goes
    10% → 50% → 100%, one commit per step listing its gates, and becomes the champion without a
    client seeing an error. (One rollout for both outcomes: the outage's hold and abort, then
    the same version's promotion.)"""
    version = register_version(loop.tracking_uri, MODEL, input_example=True)
    serving = loop.pin()[0]
    set_policy(loop, "outage", errorLimit="2")
    loop.propose_and_merge(version)
    assert loop.pin() == (version, 0)
    proposal = git("log", "-1", "--format=%s", "main^2", cwd=loop.remote.path)
    assert proposal == f"{MODEL} v{version} → local (smoke, canary 10%)"
    assert "sluice.dev/phase: smoke" in git("show", f"main:{PIN}", cwd=loop.remote.path)
    before = loop.traffic.failures()
    loop.stop_prometheus()
    try:
        rollout = subprocess.Popen(
            loop.rollout_command(), env=loop.rollout_env(), cwd=loop.root,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            wait_for(
                "an analysis whose Prometheus gates errored",
                lambda: int(str(loop.analysis(version).get("errors", 0))) >= 1,
            )
            assert loop.pin() == (version, 10)  # held, not rolled back, on the first error
            assert rollout.poll() is None
            output, _ = rollout.communicate(timeout=300)
        finally:
            rollout.kill()
    finally:
        loop.start_prometheus()
    assert rollout.returncode == 1, output
    assert "no data" in output or "unreachable" in output
    body = git("log", "-1", "--format=%B", "main~2", cwd=loop.remote.path)
    assert body.startswith(f"rollback fraud-detector v{version}: aborted, all traffic back to")
    assert "a gate could not run in 2 analyses in a row" in body
    assert "[ERROR] prometheus/request-success-rate" in body
    assert f"v{version} is not quarantined" in body
    assert loop.pin() == (serving, None)
    tags = MlflowClient(loop.tracking_uri).get_model_version(MODEL, str(version)).tags
    assert "sluice.quarantined" not in tags
    assert tags["sluice.rollout.local"] == "aborted"
    assert "could not run" in tags["sluice.rollout.local.reason"]

    canary = next_revision(latest_created(loop))
    loop.propose_and_merge(version)
    assert loop.pin() == (version, 0)
    done = loop.rollout()
    assert done.returncode == 0, done.stdout + done.stderr
    assert loop.pin() == (version, None)
    subjects = loop.subjects()
    smoked = f"fraud-detector v{version}: smoke passed, canary 10% (local)"
    assert subjects[:3] == [
        f"fraud-detector v{version}: canary 50% → 100%, promoted (local)",
        f"fraud-detector v{version}: canary 10% → 50% (local)",
        smoked,
    ], subjects[:4]
    assert subjects.count(smoked) == 2  # one smoke per rollout: the aborted one, this one
    smoke = git("log", "-1", "--format=%B", "main~2", cwd=loop.remote.path)
    assert "[pass] smoke: 0 of 50 requests to the new revision failed" in smoke, smoke
    assert "before any client request" in smoke
    # The smoke went to the new revision's tag route before any client request reached it:
    # Locust's report of it ends before the first client answer from that revision, which
    # came only after the commit that gave it 10%.
    stats = loop.smoke_report(version)
    assert sum(int(str(e["num_requests"])) for e in stats) == 50
    assert sum(int(str(e["num_failures"])) for e in stats) == 0
    smoke_ended = max(float(str(e["last_request_timestamp"])) for e in stats)
    assert canary in loop.traffic.first, (canary, loop.traffic.seen)
    assert smoke_ended < loop.traffic.first[canary]
    assert loop.committed_at(smoked) <= loop.traffic.first[canary]
    assert MlflowClient(loop.tracking_uri).get_model_version_by_alias(
        MODEL, "champion"
    ).version == str(version)
    assert loop.traffic.failures() == before
    body = git("log", "-1", "--format=%B", "main~1", cwd=loop.remote.path)
    assert "Gates:" in body
    assert "[pass] locust" in body
    # Measured, not just "no data": the checks found Knative 1.18's series.
    assert "[pass] prometheus/request-success-rate" in body
    assert "[pass] prometheus/request-latency" in body


def test_rollback_after_a_restore_undoes_the_last_promotion(loop: Loop) -> None:
    """`sluice rollback` on a version that serves alone after a restore (its pin names no
    previous version) undoes its promotion: the champion it replaced is pinned again, the
    version is quarantined by the person who asked, and the champion alias moves back."""
    serving, _ = loop.pin()
    assert serving is not None
    assert serving != 1
    client = MlflowClient(loop.tracking_uri)
    assert client.get_model_version(MODEL, str(serving)).tags["sluice.previous_champion"] == "1"
    command = [*loop.rollout_command(), "--reason", "conversion dropped in the shop"]
    command[command.index("rollout")] = "rollback"
    done = loop.run(command, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert loop.pin() == (1, None)
    subjects = loop.subjects()
    assert f"rollback fraud-detector v{serving}: restore v1 (local)" in subjects[:3]
    tags = client.get_model_version(MODEL, str(serving)).tags
    assert tags["sluice.quarantined"] == "manual: conversion dropped in the shop"
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"


def latest_created(loop: Loop) -> str:
    entry = (read_json(loop.stack.root / "runtime.json") or {})["inferenceServices"][MODEL]
    return str(entry["object"]["status"]["components"]["predictor"]["latestCreatedRevision"])


def next_revision(name: str) -> str:
    prefix, number = name.rsplit("-", 1)
    return f"{prefix}-{int(number) + 1:0{len(number)}d}"


def test_watch_rolls_back_a_failing_canary_before_its_first_analysis(loop: Loop) -> None:
    """With analyses a minute apart, the watch's SPRT on the canary's own requests stops a
    version failing 30 % of them within seconds of its first client request: the rollback
    commit names the watch and its numbers, the version is quarantined, and only a handful of
    client requests failed."""
    # The smoke (on by default) would stop this version before any client request, as the
    # last test shows; the watch is about a version that got past it, so it is off here.
    set_policy(loop, "watch", interval="60", smoke="{enabled: false}")
    try:
        version = faulty(loop, error_rate=0.3, latency_ms=0)
        before = loop.traffic.failures()
        loop.propose_and_merge(version)
        started = time.monotonic()
        done = loop.rollout()
        took = time.monotonic() - started
        assert done.returncode == 1, done.stdout + done.stderr
        assert_rolled_back(loop, version)
        body = git("log", "-1", "--format=%B", "main~2", cwd=loop.remote.path)
    finally:
        set_policy(loop, "after-watch", interval="4", smoke=None)
    assert "Rolled back: watch: canary " in body, body
    assert "[FAIL] watch: canary" in body
    assert "SPRT p0 1% vs p1 20%" in body
    assert f"v{version} is quarantined" in body
    failed = loop.traffic.failures() - before
    print(f"watch: rolled back in {took:.1f} s, {failed} failed client requests")
    assert took < 60, "the watch, not the first analysis a minute later, rolled it back"
    assert 1 <= failed <= 12, failed  # ~2.5 canary rps at 10 %: a few seconds of 30 % errors


def test_smoke_stops_an_erroring_version_before_any_client_request(loop: Loop) -> None:
    """With the default policy, a version that fails a fifth of its requests is pinned at
    weight 0, fails the smoke on its tag route and is rolled back and quarantined without a
    single client request reaching it."""
    version = faulty(loop, error_rate=0.2, latency_ms=0)
    before = loop.traffic.failures()
    canary = next_revision(latest_created(loop))
    loop.propose_and_merge(version)
    assert loop.pin() == (version, 0)
    proposal = git("log", "-1", "--format=%s", "main^2", cwd=loop.remote.path)
    assert proposal == f"{MODEL} v{version} → local (smoke, canary 10%)"
    done = loop.rollout()
    subjects = loop.subjects()
    body = git("log", "-1", "--format=%B", "main~2", cwd=loop.remote.path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert subjects[:3] == [
        f"rollback fraud-detector v{version}: v1 serves alone again (local)",
        f"rollback fraud-detector v{version}: restore v1 (local)",
        f"rollback fraud-detector v{version}: smoke failed, v1 serves (local)",
    ], subjects[:4]
    assert not any("smoke passed" in s for s in subjects[:4])
    assert "Stopped before any client traffic: smoke: " in body, body
    assert "requests to the new revision failed" in body
    assert "[FAIL] smoke:" in body
    assert f"v{version} was at 0% and never took a client request" in body
    tags = MlflowClient(loop.tracking_uri).get_model_version(MODEL, str(version)).tags
    assert tags["sluice.quarantined"].startswith("smoke: ")
    assert loop.traffic.failures() == before
    reached = sum(n for (revision, _), n in loop.traffic.seen.items() if revision == canary)
    assert reached == 0, (canary, loop.traffic.seen)
    assert loop.pin() == (1, None)


def require_provenance(loop: Loop, public_key: Path | None) -> None:
    """Commit the local environment's provenance policy, trusting ``public_key`` (kept in
    keys/ on main) and the CI builder, with the smoke off: the story is about a canary that
    clients reach. With None, take them out again."""

    def change(tree: Path) -> None:
        path = tree / "manifests" / "overlays" / "local" / "sluice.yaml"
        text = path.read_text().split(PROVENANCE_POLICY)[0]
        kept = tree / "keys" / "ci.pub"
        if public_key is None:
            kept.unlink(missing_ok=True)
        else:
            kept.parent.mkdir(exist_ok=True)
            shutil.copy(public_key, kept)
            text += PROVENANCE_POLICY
        path.write_text(text)

    commit_to_remote(loop.remote, loop.root / "policy-provenance", "Provenance policy", change)
    set_policy(loop, "provenance", smoke="{enabled: false}" if public_key else None)


PROVENANCE_POLICY = f"""
provenance:
  trustedKeys: [keys/ci.pub]
  builders: ["{BUILDERS}"]
"""


def swap_model_pkl(loop: Loop, version: int) -> None:
    """Overwrite the version's model.pkl in the stack's artifact store with another valid
    pickle: the same estimator with its coefficients negated (it loads and answers, wrongly)."""
    uri = str(MlflowClient(loop.tracking_uri).get_model_version_download_uri(MODEL, str(version)))
    artifacts = loop.stack.root / "mlflow" / "artifacts"
    path = artifacts / uri.removeprefix("mlflow-artifacts:/") / "model.pkl"
    estimator = pickle.loads(path.read_bytes())  # noqa: S301  (the test's own artifact)
    estimator.coef_ = -estimator.coef_
    path.write_bytes(pickle.dumps(estimator))


def served(loop: Loop) -> dict[str, int]:
    """What the local target serves on the model's route: storage URI → percent of traffic
    (a restore serves the old version from a new revision)."""
    entry = (read_json(loop.stack.root / "runtime.json") or {})["inferenceServices"][MODEL]
    uris = {str(r["name"]): str(r["storage_uri"]) for r in entry["revisions"]}
    shares: Counter[str] = Counter()
    for target in entry["object"]["status"]["components"]["predictor"]["traffic"]:
        shares[uris[str(target["revisionName"])]] += int(target["percent"])
    return {uri: percent for uri, percent in shares.items() if percent}


def test_an_artifact_swapped_during_the_canary_is_rolled_back_and_quarantined(
    loop: Loop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #18's tamper story on the local stack. The local environment requires provenance
    signed by the CI key; v1, signed, serves alone; the next version, signed and verified at
    its proposal, is merged at 10 % and its canary answers clients. Then someone overwrites its
    model.pkl in MLflow's artifact store with another valid pickle. `sluice rollout` verifies
    the pinned version again before judging the canary (the artifact as the registry serves it
    now, not as it was proposed), rolls it back with a commit naming the file, and quarantines
    it; v1 serves alone again, and `sluice status` says why v2 is quarantined."""
    keys = tmp_path / "keys"
    assert main(["provenance", "keygen", "--out", str(keys), "--name", "ci"]) == 0
    require_provenance(loop, keys / "ci.pub")
    try:
        sign_version(loop.tracking_uri, MODEL, 1, keys / "ci.key")
        version = register_version(loop.tracking_uri, MODEL, input_example=True)
        sign_version(loop.tracking_uri, MODEL, version, keys / "ci.key")
        (serving,) = served(loop)
        canary = next_revision(latest_created(loop))
        loop.propose_and_merge(version)
        assert loop.pin() == (version, 10)
        client = MlflowClient(loop.tracking_uri)
        tags = client.get_model_version(MODEL, str(version)).tags
        assert tags["sluice.provenance.local"].startswith("verified: ")
        wait_for("the canary to answer a client", lambda: canary in loop.traffic.first)
        swap_model_pkl(loop, version)
        done = loop.run([*loop.rollout_command(), "--poll-interval", "0.5"], timeout=400)
        assert done.returncode == 1, done.stdout + done.stderr
        assert_rolled_back(loop, version)
        body = git("log", "-1", "--format=%B", "main~2", cwd=loop.remote.path)
        wait_for("v1 to serve alone", lambda: served(loop) == {serving: 100})
        monkeypatch.chdir(loop.root)  # `sluice status` as the user runs it after the rollout
        monkeypatch.setenv("MLFLOW_TRACKING_URI", loop.tracking_uri)
        monkeypatch.delenv("SLUICE_STATE_DIR", raising=False)
        capsys.readouterr()
        assert main(["status", "--env", "local", "--repo", loop.remote.url]) == 0
        status = capsys.readouterr().out
    finally:
        require_provenance(loop, None)
    failed = f"{MODEL} v{version}: provenance subjects check failed: model.pkl has sha256 "
    assert f"Rolled back: {failed}" in body, body
    assert "as signed: the artifact changed after it was signed" in body
    assert f"v{version} is quarantined" in body
    tags = client.get_model_version(MODEL, str(version)).tags
    assert tags["sluice.quarantined"].startswith(failed)
    assert tags["sluice.provenance.local"].startswith("refused: model.pkl has sha256 ")
    assert f"{MODEL} in local: v{version} quarantined: {failed}" in status, status
