"""``sluice evidence show`` and ``check``, and the pipeline lines of ``sluice status``, over the
in-memory Git remote, registry, attestation and evidence stores: staging's controller signs
its canary and soak evidence with its own key, production's ``promotion:`` asks for a canary
and a 24h soak in staging."""

from __future__ import annotations

import io
import json
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from securesystemslib.signer import CryptoSigner
from support.envelopes import FILES
from support.gitops_repo import commit_to_remote, manifest_files
from support.gitrepo import create_git_remote
from support.registry import register_version

import controller.commands.evidence as evidence_command
from controller.analysis_types import GateResult, Verdict
from controller.backends.mlflow_attestations import MlflowAttestations
from controller.backends.mlflow_evidence import MlflowEvidence
from controller.cli import main
from controller.commands.evidence import (
    EvidenceSources,
    pipeline_entries,
    print_pipeline,
    run_evidence_check,
    run_evidence_show,
)
from controller.commands.status import watch_status
from controller.domain import QUARANTINE_TAG
from controller.errors import GateFailed
from controller.evidence.evaluate import UpstreamState, evaluate
from controller.evidence.policy import PromotionPolicy
from controller.evidence.record import record_evidence
from controller.evidence.signing import EVIDENCE_KEY_ENV, load_evidence_signer
from controller.evidence.statement import canary_body, shadow_body, soak_body
from controller.evidence.verify import EvidenceCheck
from controller.local.services import MlflowService
from controller.manifests.manifest import ReleasePin, apply_release, dump_pin, load_pin
from controller.provenance.signing import generate_keypair
from controller.rollout.record import shadow_tag
from controller.status.pipeline_view import Pin, pipeline_entry, pipeline_line
from controller.status.status_page import render_status_page
from controller.testing import MemoryReleaseRepository
from controller.testing.attestations import MemoryAttestations
from controller.testing.evidence import MemoryEvidence
from controller.testing.registry import MemoryRegistry

MODEL = "fraud-detector"
NOW = 1_796_000_000.0
HOUR = 3600.0
OVERLAY = "manifests/overlays/{env}/{file}"
PROMOTION = "promotion: {from: [staging], require: {soak: 24h}}\n"
GATES = (GateResult("success-rate", Verdict.PASS, "success 99.6% (min 99%)", {"rate": 0.996}),)


def _signer() -> tuple[CryptoSigner, str]:
    private, public = generate_keypair()
    signer = load_evidence_signer({EVIDENCE_KEY_ENV: private.decode()})
    assert signer is not None
    return signer, public.decode()


STAGING, STAGING_PUB = _signer()
PRODUCTION, PRODUCTION_PUB = _signer()


def _pinned(text: str, model: str, version: int, canary: int | None = None) -> str:
    text = text.replace(
        f"sluice.dev/model-name: {model}\n",
        f'sluice.dev/model-name: {model}\n    sluice.dev/model-version: "{version}"\n',
    )
    if canary is not None:
        text = text.replace("  predictor:\n", f"  predictor:\n    canaryTrafficPercent: {canary}\n")
    return text


@dataclass
class World:
    sources: EvidenceSources
    registry: MemoryRegistry
    attestations: MemoryAttestations
    evidence: MemoryEvidence
    repo: MemoryReleaseRepository

    def record(self, kind: str, body: dict[str, Any], *, version: int = 7, env: str = "staging"):
        signer = STAGING if env == "staging" else PRODUCTION
        return record_evidence(
            self.evidence, self.attestations, signer, kind=kind, body=body,  # type: ignore[arg-type]
            environment=env, model=MODEL, version=version, controller=f"sluice serve ({env})",
            now=NOW,
        )  # fmt: skip

    def canary(self, version: int = 7) -> None:
        body = canary_body(steps=(10, 50, 100), promoted_from=50, results=GATES, record=None)
        self.record("canary", body, version=version)

    def soak(self, hours: float, *, alerts: tuple[str, ...] = (), version: int = 7) -> None:
        body = soak_body(start=NOW - hours * HOUR, end=NOW, queries=[], alerts=list(alerts))
        self.record("soak", body, version=version)


def _files(
    model: str, *, staging: tuple[int, int | None], production: int | None, promotion: str
) -> dict[str, str]:
    """The repository's manifests with staging (and production) pinned, each environment's
    controller key, and production's promotion policy."""
    files = manifest_files(model)
    pin = OVERLAY.format(env="{env}", file="fraud-detector.yaml")
    config = OVERLAY.format(env="{env}", file="sluice.yaml")
    files[pin.format(env="staging")] = _pinned(files[pin.format(env="staging")], model, *staging)
    if production is not None:
        production_pin = files[pin.format(env="production")]
        files[pin.format(env="production")] = _pinned(production_pin, model, production)
    files[config.format(env="staging")] += "evidence: {controllerKeys: [keys/staging.pub]}\n"
    files[config.format(env="production")] += (
        "evidence: {controllerKeys: [keys/production.pub]}\n" + promotion
    )
    return files | {"keys/staging.pub": STAGING_PUB, "keys/production.pub": PRODUCTION_PUB}


def _world(
    *, staging: tuple[int, int | None] = (7, None), production: int = 6, promotion: str = PROMOTION
) -> World:
    files = _files(MODEL, staging=staging, production=production, promotion=promotion)
    repo = MemoryReleaseRepository(files, clock=lambda: NOW)
    registry = MemoryRegistry()
    attestations = MemoryAttestations()
    store = MemoryEvidence()
    for _ in range(9):
        version = registry.register(MODEL)
        attestations.record(MODEL, version, FILES, None)
        store.add_version(MODEL, version)
    sources = EvidenceSources(repo, registry, attestations, store)
    return World(sources, registry, attestations, store, repo)


@pytest.fixture
def world() -> World:
    return _world()


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200), out


# -- sluice evidence show ---------------------------------------------------------------------


def test_show_lists_each_piece_with_its_signer_numbers_or_failed_link(world: World) -> None:
    world.canary()
    world.soak(6)
    world.evidence.replace(
        MODEL, 7, kind="soak", environment="staging", line=b'{"payload":"e30="}\n'
    )
    console, out = _console()
    checks = run_evidence_show(world.sources, MODEL, 7, as_json=False, console=console)
    assert [c.verified for c in checks] == [True, False, False]
    lines = out.getvalue().splitlines()
    assert lines[0] == f"{MODEL} v7: 3 pieces of evidence, 2 failed"
    keyid = STAGING.public_key.keyid[:12]
    assert lines[1] == (
        f"✓ canary in staging at 2026-11-30T00:53:20Z, key {keyid}…: steps 10%→50%→100%, "
        "promoted from 50% after 0 looks; success-rate success 99.6% (min 99%)"
    )
    assert lines[2].startswith("✗ soak in staging: tag check failed: the tag names envelope ")
    assert lines[3].startswith("✗ ? in ?: tag check failed: envelope sha256:")


def test_show_json_carries_each_body_and_a_version_without_evidence_says_so(world: World) -> None:
    world.record(
        "shadow",
        shadow_body(
            verdict="pass", reason="no check failed", samples=900, labelled=600, results=()
        ),
    )
    console, out = _console()
    run_evidence_show(world.sources, MODEL, 7, as_json=True, console=console)
    (shadow,) = json.loads(out.getvalue())["evidence"]
    assert shadow["verified"]
    assert shadow["keyid"] == STAGING.public_key.keyid
    assert shadow["body"]["samples"] == 900
    assert shadow["headline"] == "verdict pass on 900 samples (600 labelled): no check failed"
    console, out = _console()
    run_evidence_show(world.sources, MODEL, 5, as_json=False, console=console)
    assert out.getvalue() == f"{MODEL} v5: no evidence recorded\n"


# -- sluice evidence check --------------------------------------------------------------------


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setattr(
        evidence_command, "evidence_sources", lambda settings, remote: world.sources
    )
    return world


def test_check_exits_1_with_one_line_per_missing_piece_then_0_once_complete(
    cli: World, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.soak(6)
    args = ["evidence", "check", MODEL, "--version", "7", "--env", "production"]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{MODEL} v7 may not be proposed to production yet:",
        "✗ canary in staging: none",
        "✗ soak in staging: 6h of 24h",
    ]
    assert "lacks 2 pieces of evidence production requires" in err
    cli.canary()
    cli.soak(24.5)
    assert main([*args[:3], "--alias", "challenger", *args[5:]]) == 1  # v9 has none
    capsys.readouterr()
    assert main(args) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[0] == f"{MODEL} v7 may be proposed to production: evidence complete"
    assert "✓ soak in staging: 1d30m of 24h, clean" in out


def test_check_json_and_the_proposal_leaves_the_approval_to_the_pull_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = _world(promotion="promotion: {from: [staging], approval: {required: true}}\n")
    monkeypatch.setattr(
        evidence_command, "evidence_sources", lambda settings, remote: world.sources
    )
    world.canary()
    args = ["evidence", "check", MODEL, "--version", "7", "--env", "production", "--json"]
    assert main(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["allowed"]
    assert document["missing"] == []
    assert main([*args, "--with-approval"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["missing"] == ["approval in production: none"]


def _check_7(world: World) -> tuple[bool, str]:
    """``sluice evidence check`` of v7 into production: whether it may be proposed, and what
    it printed."""
    console, out = _console()
    try:
        run_evidence_check(
            world.sources, MODEL, version=7, alias=None, environment="production",
            as_json=False, console=console,
        )  # fmt: skip
    except GateFailed:
        return False, out.getvalue()
    return True, out.getvalue()


def test_check_refuses_a_quarantined_version_and_one_superseded_upstream(world: World) -> None:
    world.canary()
    world.soak(30)
    world.registry.set_version_tags(
        MODEL,
        7,
        {QUARANTINE_TAG: "error rate 4.1% (max 1%)", f"{QUARANTINE_TAG}.environment": "staging"},
    )
    allowed, out = _check_7(world)
    assert not allowed
    assert "✗ staging quarantined v7: error rate 4.1% (max 1%)" in out
    later = _world(staging=(8, None))
    later.canary()
    later.soak(30)
    allowed, out = _check_7(later)
    assert not allowed
    assert "✗ superseded in staging by v8" in out
    canarying = _world(staging=(8, 50))  # v8 may yet fail: v7 still serves half of staging
    canarying.canary()
    canarying.soak(30)
    allowed, out = _check_7(canarying)
    assert allowed
    assert "evidence complete" in out


def test_an_environment_without_promotion_takes_any_version(
    cli: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evidence", "check", MODEL, "--version", "7", "--env", "staging"]) == 0
    assert (
        "staging has no promotion: policy, so any version may be proposed"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--version", "7", "--env", "qa"], "unknown environment 'qa'"),
        (["--version", "7", "--alias", "champion", "--env", "production"], "--version or --alias"),
        (["--env", "production"], "--version or --alias"),
        (["--version", "99", "--env", "production"], "version 99 of model"),
    ],
)
def test_bad_input_exits_2_in_one_line(
    cli: World, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["evidence", "check", MODEL, *args]) == 2
    assert message in capsys.readouterr().err


# -- the pipeline in sluice status ------------------------------------------------------------


def _lines(world: World, environment: str | None = None) -> list[str]:
    entries, notes = pipeline_entries(world.sources, environment)
    assert notes == []
    return [entry["line"] for entry in entries]


def test_the_pipeline_line_says_what_staging_earned_and_what_production_waits_for(
    world: World,
) -> None:
    assert _lines(world) == [
        "staging v7 no canary, soak -/24h → production waiting (canary, soak), serving v6"
    ]
    world.canary()
    world.soak(6)
    assert _lines(world) == [
        "staging v7 ✓ canary, soak 6h/24h → production waiting (soak), serving v6"
    ]
    world.soak(25)
    assert _lines(world, "staging") == [
        "staging v7 ✓ canary, ✓ soak 24h → production ready for v7, serving v6"
    ]
    assert _lines(world, "local") == []


def test_the_pipeline_shows_a_canary_under_way_a_version_served_and_one_blocked() -> None:
    canarying = _world(staging=(8, 10))
    assert _lines(canarying) == [
        "staging v8 canary 10%, soak -/24h → production waiting (canary, soak), serving v6"
    ]
    served = _world(production=7)
    assert _lines(served)[0].endswith("→ production serves v7")
    judged = _world()
    judged.canary()
    judged.soak(30, alerts=("FraudDetectorDrift",))
    judged.registry.set_version_tags(MODEL, 7, {shadow_tag("staging"): "fail"})
    judged.registry.set_version_tags(
        MODEL,
        7,
        {QUARANTINE_TAG: "shadow judged it worse", f"{QUARANTINE_TAG}.environment": "staging"},
    )
    assert _lines(judged) == [
        "staging v7 ✗ quarantined, ✓ canary, no shadow, ✗ soak 1d6h with alert FraudDetectorDrift "
        "→ production blocked "
        "(quarantined), serving v6"
    ]


def test_a_soak_not_yet_decided_counts_from_the_promotion_commit() -> None:
    """The soak's evidence is recorded once it is decided; until then the line counts the
    soak from the commit that promoted the version to 100 % in staging, as the soak does."""
    world = _world(staging=(7, 50))
    world.canary()

    def promote(root: Path) -> None:
        path = root / OVERLAY.format(env="staging", file="fraud-detector.yaml")
        document = load_pin(path.read_text(), source="pin")
        apply_release(document, ReleasePin(MODEL, 7, "s3://m/7", None, 6, None), source="pin")
        path.write_text(dump_pin(document))

    message = "Promote v7\n\nSluice-Version: 7\nSluice-Env: staging\nSluice-Action: promote\n"
    world.repo.commit_and_push(branch="main", base="main", edit=promote, message=message)
    entries, _ = pipeline_entries(world.sources, None, now=NOW + 6 * HOUR)
    assert entries[0]["line"] == (
        "staging v7 ✓ canary, soak 6h/24h → production waiting (soak), serving v6"
    )


def test_forged_evidence_blocks_and_a_soak_that_saw_an_alert_waits() -> None:
    forged = _world()
    forged.canary()
    other, _ = _signer()  # not staging's controller key
    body = canary_body(steps=(10, 50, 100), promoted_from=50, results=GATES, record=None)
    record_evidence(
        forged.evidence, forged.attestations, other, kind="canary", body=body,
        environment="staging", model=MODEL, version=7, controller="someone", now=NOW,
    )  # fmt: skip
    assert _lines(forged) == [
        "staging v7 ✗ canary (signature check failed), soak -/24h → production blocked "
        "(canary evidence broken), serving v6"
    ]
    alerted = _world()
    alerted.canary()
    alerted.soak(30, alerts=("FraudDetectorDrift",))
    assert _lines(alerted) == [
        "staging v7 ✓ canary, ✗ soak 1d6h with alert FraudDetectorDrift → production waiting "
        "(soak), serving v6"
    ]


def test_two_upstream_environments_each_show_their_own_hop() -> None:
    policy = PromotionPolicy.model_validate({"from": ["staging", "qa"]})
    canary = EvidenceCheck("staging", "canary", True, "signed", predicate={"canary": {}})
    verdict = evaluate(
        policy, [canary], [UpstreamState("staging"), UpstreamState("qa")],
        environment="production", version=7,
    )  # fmt: skip
    entry = pipeline_entry(
        environment="production", model=MODEL, policy=policy,
        upstream=[Pin("staging", 7), Pin("qa", 7, 50)], states=[], serving=Pin("production", None),
        verdict=verdict, checks=[canary],
    )  # fmt: skip
    assert pipeline_line(entry) == (
        "staging v7 ✓ canary + qa v7 canary 50% → production waiting (canary)"
    )
    nothing = pipeline_entry(
        environment="production", model=MODEL, policy=policy, upstream=[Pin("staging", None)],
        states=[], serving=Pin("production", 6), verdict=None, checks=[],
    )  # fmt: skip
    assert pipeline_line(nothing) == (
        "staging nothing pinned → production nothing to promote, serving v6"
    )


def test_status_prints_each_version_s_evidence_under_its_line_and_json_keeps_it(
    world: World,
) -> None:
    world.canary()
    world.soak(6)
    entries, notes = pipeline_entries(world.sources, None)
    console, out = _console()
    print_pipeline(console, entries, [*notes, "qa: unknown"])
    assert out.getvalue().splitlines() == [
        f"{MODEL}: staging v7 ✓ canary, soak 6h/24h → production waiting (soak), serving v6",
        "  v7 ✓ canary in staging: steps 10%→50%→100%, promoted from 50% after 0 looks; "
        "success-rate success 99.6% (min 99%)",
        "  v7 ✓ soak in staging: 6h at 100% (2026-11-29T18:53:20Z to 2026-11-30T00:53:20Z), "
        "no alert",
        "pipeline: qa: unknown",
    ]
    (entry,) = json.loads(json.dumps(entries))
    assert entry["state"] == "waiting"
    assert entry["waitingFor"] == ["soak"]
    assert entry["missing"] == ["soak in staging: 6h of 24h"]
    assert [piece["kind"] for piece in entry["evidence"]] == ["canary", "soak"]
    assert entry["upstream"][0]["requirements"][1] == {
        "kind": "soak", "state": "under way", "text": "soak 6h/24h",
    }  # fmt: skip


def _watched(world: World, *, terminal: bool) -> str:
    """What `sluice status --watch` shows over four looks of the pipeline (no releases): v7's
    soak evidence says 6h at the first look, nothing changes at the second, and a 24h clean
    soak is recorded at the third."""
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=terminal)
    stop = threading.Event()
    looks: list[int] = []

    def pipeline() -> tuple[list[dict[str, Any]], list[str]]:
        looks.append(len(looks) + 1)
        if len(looks) in (1, 3):
            world.soak(6 if len(looks) == 1 else 24)
        if len(looks) == 4:
            stop.set()
        return pipeline_entries(world.sources, None)

    watch_status(
        lambda: [], console=console, interval_seconds=0, clock=lambda: NOW, stop=stop,
        pipeline=pipeline,
    )  # fmt: skip
    return out.getvalue()


def test_status_watch_shows_the_pipeline_lines_status_prints(world: World) -> None:
    """Piped, the watch prints a model's pipeline line and its pieces as `sluice status` does,
    again only when the path changed; in a terminal
    the redrawn view has them under the table. Before, the watch showed the releases only."""
    world.canary()
    piped = _watched(world, terminal=False).splitlines()
    heads = [line for line in piped if line.startswith(f"{MODEL}: ")]
    assert heads == [
        f"{MODEL}: staging v7 ✓ canary, soak 6h/24h → production waiting (soak), serving v6",
        f"{MODEL}: staging v7 ✓ canary, ✓ soak 24h → production ready for v7, serving v6",
    ]
    assert piped[1].startswith("  v7 ✓ canary in staging: steps 10%→50%→100%")
    assert piped[2].startswith("  v7 ✓ soak in staging: 6h at 100%")
    drawn = _watched(_world(), terminal=True)
    assert "staging v7 no canary, ✓ soak 24h → production waiting (canary), serving v6" in drawn
    assert "v7 ✓ soak in staging: 1d at 100%" in drawn


def test_the_page_of_sluice_serve_shows_the_pipeline_and_each_piece(world: World) -> None:
    world.canary()
    world.evidence.delete(MODEL, 7, kind="canary", environment="staging")
    entries, _ = pipeline_entries(world.sources, None)
    page = render_status_page([], {}, now=NOW, refresh_seconds=0, pipeline=entries)
    section = page[page.index('<section class="pipeline">') :]
    assert (
        '<li data-state="blocked"><b>fraud-detector</b>: staging v7 ✗ canary (tag check ' in section
    )
    assert "→ production blocked (canary evidence broken), serving v6" in section
    assert "<li>✗ canary in staging: tag check failed: the tag names envelope sha256:" in section


def test_a_model_whose_evidence_cannot_be_read_is_a_note_not_a_crash(world: World) -> None:
    world.registry.outage = True
    entries, notes = pipeline_entries(world.sources, None)
    assert entries == []
    assert notes[0].startswith(f"{MODEL} into production: MLflow registry at memory://registry")


# -- through MLflow and Git ---------------------------------------------------------------------


@pytest.mark.slow
def test_check_and_show_read_the_evidence_mlflow_keeps_and_the_keys_git_holds(
    mlflow_server: MlflowService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The commands as a user runs them, on a real tracking server and Git remote: staging's
    evidence logged to the version's run and tagged on it, production's policy and the
    controller keys on the remote's default branch."""
    uri = mlflow_server.tracking_uri
    name = f"evidence-{uuid.uuid4().hex[:8]}"
    version = register_version(uri, name)
    files = _files(name, staging=(version, None), production=None, promotion=PROMOTION)

    def write(tree: Path) -> None:
        for path, text in files.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_text(text)

    remote = create_git_remote(tmp_path)
    commit_to_remote(remote, tmp_path / "work", "Seed the environments", write)
    monkeypatch.setenv("SLUICE_STATE_DIR", str(tmp_path / "state"))
    store, attestations = MlflowEvidence(uri), MlflowAttestations(uri)

    def record(kind: str, body: dict[str, Any]) -> None:
        record_evidence(
            store, attestations, STAGING, kind=kind, body=body,  # type: ignore[arg-type]
            environment="staging", model=name, version=version,
            controller="sluice serve (staging)", now=NOW,
        )  # fmt: skip

    record("canary", canary_body(steps=(10, 50, 100), promoted_from=50, results=GATES, record=None))
    root = ["--mlflow-tracking-uri", uri, "evidence"]
    check = [*root, "check", name, "--version", str(version), "--env", "production"]
    assert main([*check, "--repo", remote.url]) == 1
    assert "✗ soak in staging: none" in capsys.readouterr().out
    record("soak", soak_body(start=NOW - 25 * HOUR, end=NOW, queries=[], alerts=[]))
    assert main([*check, "--repo", remote.url]) == 0
    assert "✓ soak in staging: 1d1h of 24h, clean" in capsys.readouterr().out
    assert main([*root, "show", name, "--version", str(version), "--repo", remote.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{name} v{version}: 2 pieces of evidence"
    assert [line.split(" at ")[0] for line in lines[1:]] == [
        "✓ canary in staging", "✓ soak in staging",
    ]  # fmt: skip
    status = ["--mlflow-tracking-uri", uri, "status", "--env", "production", "--json"]
    assert main([*status, "--repo", remote.url]) == 0
    document = json.loads(capsys.readouterr().out)
    (entry,) = document["pipeline"]
    assert (
        entry["line"]
        == f"staging v{version} ✓ canary, ✓ soak 24h → production ready for v{version}"
    )
