"""Watching a rollout as a user does: `sluice status` (once, piped at 80 columns, `--watch`)
and the page `sluice serve` shows at `/`, opened in a real headless Chromium.

The release is v2 of a fresh model at a 10 % canary beside v1 on a pretend cluster
(:mod:`support.cluster_release`), pinned by a rollout step commit whose body carries its gates;
Prometheus is a small stand-in serving the range query API with made-up canary and primary
series, read through the real Prometheus backend. The page's screenshot is kept in
tests/artifacts/status-page.png (gitignored).
"""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from support.chromium import chromium
from support.cluster_release import ClusterRelease, cluster_release
from support.gitrepo import GitRemote
from support.kube_api import kube_api
from support.prometheus_api import prometheus_api
from support.serve_page import serving_page

from controller.analysis_types import GateResult, Verdict
from controller.backends.git_lease import GitLeaseStore
from controller.backends.git_repo import GitWorkspace
from controller.lease import LeaseKeeper, lease_name
from controller.local.processes import free_port
from controller.local.services import MlflowService
from controller.rollout.messages import RolloutCommit, render_rollout_message

SLUICE = str(Path(sys.executable).with_name("sluice"))
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
GATES = (
    GateResult(
        "prometheus/request-success-rate",
        Verdict.PASS,
        "request-success-rate 99.95% (min 99%) vs primary 99.91%",
    ),
    GateResult(
        "prometheus/request-latency",
        Verdict.PASS,
        "request-latency p99 41.2 ms (max 500 ms) vs primary 39.8 ms",
    ),
)


def interruptible() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ctrl-C's default in the child, as a terminal gives it: a suite started in the background
    of a shell without job control (`make test &` in a script) runs with SIGINT ignored, which
    every child would inherit, and Python leaves an inherited ignore in place."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _release(tracking_uri: str, remote: GitRemote, api: Any, root: Path, **env: str) -> Any:
    """v2 at 10 %, pinned by a step commit that lists its gates; v3 quarantined."""
    step = RolloutCommit(
        model="fraud-detector", version=2, environment="staging", action="step",
        headline="canary 5% → 10%", summary="Every gate passed at 5%.", results=GATES,
    )  # fmt: skip
    release = cluster_release(
        tracking_uri, remote, api, root, message=render_rollout_message(step), extra_env=env
    )
    client = MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment(f"{release.model}-v3")).info
    client.create_model_version(release.model, f"{run.artifact_uri}/m3", run.run_id)
    client.set_model_version_tag(release.model, "3", "sluice.quarantined", "smoke failed: 50 of 50")
    return release


def sluice(release: ClusterRelease, *args: str, cwd: Path, columns: int = 300) -> Any:
    return subprocess.run(
        [SLUICE, *args],
        env={**release.env, "COLUMNS": str(columns)},
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=180,
        check=False,
    )


STATUS = ("status", "--env", "staging", "--target", "kubernetes")


@pytest.mark.slow
def test_status_shows_the_last_gates_time_in_phase_next_analysis_and_what_to_run(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """Before, "last gates" was always "-": a step that passed wrote no analysis record, and its
    gates lived only in the commit body. Now they are read from there, with their numbers; the
    row says when the next analysis is due (the policy's hour), that no controller drives the
    rollout and the command that would, and which version is quarantined. Piped at 80 columns
    the table still fits and the hint is one unwrapped line."""
    with kube_api() as api:
        release = _release(mlflow_server.tracking_uri, git_remote, api, tmp_path)
        shown = sluice(release, *STATUS, "--json", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        (row,) = [r for r in json.loads(shown.stdout)["releases"] if r["model"] == release.model]
        assert [(g["gate"], g["verdict"]) for g in row["gates"]] == [
            ("prometheus/request-success-rate", "pass"),
            ("prometheus/request-latency", "pass"),
        ]
        assert "99.95%" in row["gates"][0]["summary"]
        assert row["gatesFrom"].startswith("commit ")
        assert row["phase"] == "analysing"
        assert 3000 < row["nextAnalysisAt"] - time.time() <= 3600
        command = f"sluice rollout {release.model} --env staging --target kubernetes"
        assert row["hint"] == f"no controller drives it: run `{command}`"
        assert row["versions"] == [
            {"version": 3, "state": "quarantined", "reason": "smoke failed: 50 of 50"}
        ]
        assert row["revisions"]["canary"] == "fraud-detector-predictor-00002"

        table = sluice(release, *STATUS, cwd=tmp_path, columns=80)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        width = max(len(line) for line in lines if "│" in line or "┃" in line)
        assert width <= 80, table.stdout
        flat = " ".join(table.stdout.replace("│", " ").split())
        assert "analysing" in flat
        assert "pass: request-success-rate 99.95%" in flat
        assert "41.2 ms" in flat
        assert "…" not in table.stdout
        assert f"{release.model} in staging: next: no controller drives it: run `{command}`" in (
            lines
        )
        assert f"{release.model} in staging: v3 quarantined: smoke failed: 50 of 50" in lines


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


@pytest.mark.slow
def test_status_watch_piped_prints_one_line_per_change_and_stops_on_ctrl_c(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """`sluice status --watch | ...` prints the release's line once, nothing while only the
    clocks move (several looks), a new line when a controller takes the release's lease, and
    exits 0 on Ctrl-C."""
    with kube_api() as api:
        release = _release(mlflow_server.tracking_uri, git_remote, api, tmp_path)
        watch = subprocess.Popen(
            [SLUICE, *STATUS, "--watch", "--interval", "0.5"],
            preexec_fn=interruptible,
            env={**release.env, "COLUMNS": "80"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        try:
            lines = _lines(watch)
            first = lines.get(timeout=60)
            assert f"staging/{release.model} [analysing] serving v1 canary v2 10%" in first
            assert "in phase " in first
            assert "next analysis in 59m" in first or "next analysis in 1h 00m" in first
            assert "gates: pass: request-success-rate 99.95%" in first
            assert "no controller drives it" in first
            time.sleep(4)  # several looks at the same state
            assert lines.empty(), lines.get()
            keeper = LeaseKeeper(
                GitLeaseStore(GitWorkspace(git_remote.url, tmp_path / "ctl-a")), "ctl-a:1:ab"
            )
            keeper.hold(lease_name("staging", release.model))
            second = lines.get(timeout=60)
            assert "controller ctl-a:1:ab until " in second
            assert "no controller drives it" not in second
            watch.send_signal(signal.SIGINT)
            assert watch.wait(timeout=30) == 0
            keeper.release_all()
        finally:
            watch.kill()
            watch.wait()


ROLLOUT = ("rollout", "--env", "staging", "--target", "kubernetes")


@pytest.mark.slow
def test_rollout_piped_prints_one_line_per_change(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """`sluice rollout | ...` on a release watched between hourly analyses: the pass line once,
    whole and with its phase in brackets (Rich used to eat "[analysing]" as markup), no table
    and no colour codes; nothing more while the rollout only waits (several passes); Ctrl-C
    stops it and releases the lease."""
    with kube_api() as api:
        release = _release(mlflow_server.tracking_uri, git_remote, api, tmp_path)
        rollout = subprocess.Popen(
            [SLUICE, ROLLOUT[0], release.model, *ROLLOUT[1:], "--poll-interval", "0.5"],
            preexec_fn=interruptible,
            env={**release.env, "COLUMNS": "80"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        try:
            lines = _lines(rollout)
            first = lines.get(timeout=90)
            assert re.fullmatch(
                rf"\d\d:\d\d:\d\d {release.model} v2 at 10% \[analysing\] .+", first
            ), first
            assert len(first) > 80  # one line, not wrapped at the 80 columns of COLUMNS
            while release.lease_commit() is None:  # the rollout holds the release now
                time.sleep(0.2)
            time.sleep(6)  # more passes of the same watch
            rest = []
            while not lines.empty():
                rest.append(lines.get())
            assert first not in rest, rest
            assert len(rest) == len(set(rest)), rest
            assert not any("│" in line or "\x1b[" in line for line in [first, *rest]), rest
            rollout.send_signal(signal.SIGINT)
            assert rollout.wait(timeout=30) == 130
        finally:
            rollout.kill()
            rollout.wait()


@pytest.mark.slow
def test_rollout_in_a_terminal_redraws_the_release_under_its_passes(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """`sluice rollout` in a terminal (a pseudo-terminal here) draws what `sluice status
    --watch` draws for the release under the pass lines: its phase, weight, last gates with
    their numbers, time in phase, the next analysis and this rollout as its controller (the
    lease holder), and when the next pass comes."""
    with kube_api() as api:
        release = _release(mlflow_server.tracking_uri, git_remote, api, tmp_path)
        leader, follower = pty.openpty()
        rollout = subprocess.Popen(
            [SLUICE, ROLLOUT[0], release.model, *ROLLOUT[1:]],
            preexec_fn=interruptible,
            env={**release.env, "COLUMNS": "200", "LINES": "50", "TERM": "xterm"},
            stdin=follower,
            stdout=follower,
            stderr=follower,
            cwd=tmp_path,
        )
        os.close(follower)
        seen = b""
        try:
            deadline = time.monotonic() + 90
            holder = f":{rollout.pid}:".encode()  # this rollout's lease: HOST:PID:NONCE
            while b"next pass in" not in seen or holder not in seen:
                assert time.monotonic() < deadline, seen.decode(errors="replace")[-3000:]
                ready, _, _ = select.select([leader], [], [], 1.0)
                if ready:
                    seen += os.read(leader, 65536)
            time.sleep(2.5)  # the clocks tick between passes
            while select.select([leader], [], [], 0.5)[0]:
                seen += os.read(leader, 65536)
        finally:
            rollout.send_signal(signal.SIGINT)
            try:
                rollout.wait(timeout=30)
            finally:
                rollout.kill()
                os.close(leader)
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
        assert f"{release.model} v2 at 10% [analysing]" in text
        assert "sluice status" in text  # the table's title
        flat = " ".join(text.replace("│", " ").split())
        assert "v2 10%" in flat
        assert "pass: request-success-rate 99.95%" in flat
        assert "in 59m" in flat or "in 1h 00m" in flat  # the next analysis, an hour out
        assert re.search(rf"\S+:{rollout.pid}:\S+ until \d\d:\d\d:\d\d", flat)  # its lease
        assert "Ctrl-C stops this command" in flat
        assert rollout.returncode == 130


@pytest.mark.slow
def test_the_status_page_of_sluice_serve_in_a_real_browser(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """`sluice serve` with Argo CD set shows the cluster's releases at `/`: Chromium sees the
    release, its phase, the gates with their numbers, and one chart each of success rate and
    p99 with a canary and a primary line, drawn from range queries of each revision. The
    screenshot goes to tests/artifacts/status-page.png."""
    port = free_port()
    with kube_api() as api, prometheus_api() as prometheus:
        release = _release(
            mlflow_server.tracking_uri, git_remote, api, tmp_path,
            SLUICE_PROMETHEUS_URL=prometheus.url, SLUICE_SERVE_PORT=str(port),
        )  # fmt: skip
        with serving_page(["--env", "staging"], port=port, env=release.env, cwd=tmp_path) as (
            url,
            page,
        ):
            assert page.status_code == 200, page.text
            assert page.headers["Content-Type"].startswith("text/html")
            dom = chromium("--dump-dom", url)
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "status-page.png"
            shot.unlink(missing_ok=True)
            chromium(f"--screenshot={shot}", "--window-size=1280,900", url)
    print(f"screenshot: {shot}")
    assert f'data-model="{release.model}"' in dom
    assert 'data-phase="analysing"' in dom
    assert f"{release.model} in staging" in dom
    assert "request-success-rate 99.95%" in dom
    assert "v3 quarantined: smoke failed: 50 of 50" in dom
    for metric in ("success-rate", "p99"):
        assert f'class="chart" data-metric="{metric}"' in dom
    assert dom.count('data-role="canary"') == 2
    assert dom.count('data-role="primary"') == 2
    assert "no data yet" not in dom
    revisions = ("fraud-detector-predictor-00002", "fraud-detector-predictor-00001")
    for revision in revisions:
        assert any(revision in q and "histogram_quantile" in q for q in prometheus.queries)
    assert shot.stat().st_size > 10_000
    assert os.access(shot, os.R_OK)


def test_status_says_when_drift_is_off_for_the_pinned_version(
    mlflow_server: MlflowService,
) -> None:
    """A model whose training logged no reference profile still rolls out; `sluice status`
    says drift is off for it and how to turn it on, and says nothing for one that logged it."""
    from controller.backends.mlflow_registry import PROFILE_ARTIFACT, MlflowRegistry
    from controller.commands.status_rows import _drift_row

    client = MlflowClient(mlflow_server.tracking_uri)
    experiment = client.create_experiment(f"drift-row-{time.time_ns()}")
    bare = client.create_run(experiment).info.run_id
    profiled = client.create_run(experiment).info.run_id
    client.log_text(profiled, "{}", PROFILE_ARTIFACT)
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    off = _drift_row(registry, 3, bare)
    assert off is not None
    assert off["on"] is False
    assert off["summary"].startswith("off: v3 logged no reference_profile.json")
    assert "controller.training.log_reference_profile" in off["summary"]
    assert _drift_row(registry, 4, profiled) == {"on": True, "summary": "on: v4's training profile"}
    assert _drift_row(registry, None, None) is None
