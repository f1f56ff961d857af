"""The by-hand loop's commands, fast: `sluice local merge` (git and GitHub), `local env`, `local
url`, the remote `local up` seeds, and `config show` naming where each value came from."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.github_api import GitHubApiServer
from support.gitops_repo import ROOT, commit_to_remote, snapshot
from support.gitrepo import GitRemote, git

from controller.backends.github_forge import GitHubForge
from controller.cli import main
from controller.domain import ChangeRequest
from controller.errors import ConfigError
from controller.local.effective_settings import setting_sources
from controller.local.stack import REMOTE_FILE, STACK_FILE
from controller.local.state import write_json
from controller.settings import Settings

PIN = "manifests/overlays/local/fraud-detector.yaml"
TOKEN = "ghp_sluiceLocalMergeToken0123456789abcdef"
REPO = "acme/gitops"
_LOOP_VARIABLES = (
    "MLFLOW_TRACKING_URI", "SLUICE_GIT_REMOTE", "SLUICE_STATE_DIR", "SLUICE_CONFIG",
    "GITHUB_TOKEN", "SLUICE_GITHUB_TOKEN", "GITHUB_REPOSITORY", "SLUICE_GITHUB_REPOSITORY",
    "GITHUB_API_URL", "SLUICE_GITHUB_API_URL",
)  # fmt: skip


@pytest.fixture(autouse=True)
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in a directory of its own, with none of the loop's variables set."""
    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in _LOOP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return work


@pytest.fixture
def model() -> str:
    """The remote serves fraud-detector under its own name (no registry is involved here)."""
    return "fraud-detector"


def propose_branch(remote: GitRemote, tmp_path: Path, version: int, line: str) -> str:
    """Push `sluice/local/MODEL/vN` off main with one more line in the pin, as propose would."""
    work = tmp_path / f"proposal-{version}"
    remote.clone(work)
    branch = f"sluice/local/fraud-detector/v{version}"
    git("checkout", "--quiet", "-b", branch, cwd=work)
    with (work / PIN).open("a") as pin:
        pin.write(f"# {line}\n")
    git("commit", "--quiet", "-am", f"fraud-detector v{version} → local (canary 10%)", cwd=work)
    git("push", "--quiet", "origin", branch, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def merge(remote: GitRemote, *extra: str) -> int:
    return main(
        ["local", "merge", "fraud-detector", "--env", "local", "--repo", remote.url, *extra]
    )


def test_local_merge_makes_a_merge_commit_and_keeps_the_branch(
    remote: GitRemote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The newest unmerged proposal is merged into main with a merge commit (main and the
    branch its parents), the branch stays, and the merge commit is printed; an older merged
    proposal is not merged again."""
    old = propose_branch(remote, tmp_path, 1, "v1")
    assert merge(remote) == 0
    first = capsys.readouterr().out.split()[-1]
    assert git("rev-parse", "main^2", cwd=remote.path) == old
    assert first == remote.head()
    main_before = remote.head()
    head = propose_branch(remote, tmp_path, 2, "v2")
    assert merge(remote) == 0
    out = capsys.readouterr().out
    sha = out.split()[-1]
    assert sha == remote.head()
    assert "Merged sluice/local/fraud-detector/v2 into main" in out
    parents = git("log", "-1", "--format=%P", sha, cwd=remote.path).split()
    assert parents == [main_before, head]
    assert git("log", "-1", "--format=%s", sha, cwd=remote.path) == (
        "Merge sluice/local/fraud-detector/v2"
    )
    assert remote.head("sluice/local/fraud-detector/v2") == head  # the branch is kept


def test_local_merge_without_an_open_proposal_changes_nothing(
    remote: GitRemote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No unmerged proposal branch: one line naming the model and the fix, exit 2, the remote
    unchanged (an already merged branch does not count)."""
    before = snapshot(remote)
    assert merge(remote) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no open proposal for fraud-detector in local" in err
    assert "sluice propose fraud-detector --env local" in err
    assert snapshot(remote) == before
    assert main(["local", "merge", "nope", "--env", "local", "--repo", remote.url]) == 2
    assert "does not serve model 'nope'" in capsys.readouterr().err
    assert main(["local", "merge", "fraud-detector", "--env", "qa", "--repo", remote.url]) == 2
    assert "unknown environment 'qa'" in capsys.readouterr().err


def test_local_merge_conflict_changes_nothing(
    remote: GitRemote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A proposal that conflicts with main is refused in one line naming both and the fix,
    exit 2, and neither main nor the branch moves."""
    propose_branch(remote, tmp_path, 3, "from the proposal")

    def conflicting(tree: Path) -> None:
        with (tree / PIN).open("a") as pin:
            pin.write("# from main\n")

    commit_to_remote(remote, tmp_path / "main-edit", "Edit the pin on main", conflicting)
    before = snapshot(remote)
    assert merge(remote) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "sluice/local/fraud-detector/v3 conflicts with main" in err
    assert "propose again" in err
    assert snapshot(remote) == before


@pytest.fixture
def github(remote: GitRemote) -> Iterator[GitHubApiServer]:
    with GitHubApiServer(token=TOKEN, repositories={REPO: remote.path}) as server:
        yield server


def test_local_merge_through_github_uses_the_merge_endpoint(
    remote: GitRemote,
    tmp_path: Path,
    github: GitHubApiServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With --forge github the open pull request is merged by GitHub (its merge commit, its
    message) and the same command prints it; no open pull request is one line, exit non-zero."""
    head = propose_branch(remote, tmp_path, 4, "v4")
    monkeypatch.setenv("SLUICE_GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("SLUICE_GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("SLUICE_GITHUB_API_URL", github.api_url)
    assert merge(remote, "--forge", "github") != 0
    assert "no open pull request from sluice/local/fraud-detector/v4" in capsys.readouterr().err
    forge = GitHubForge(api_url=github.api_url, token=TOKEN, repository=REPO)
    pr = forge.open_or_update(
        ChangeRequest(
            branch="sluice/local/fraud-detector/v4", base="main",
            title="fraud-detector v4 → local", body="card", labels=("sluice",), head_sha=head,
            supersedes_prefix="sluice/local/fraud-detector/",
        )
    )  # fmt: skip
    main_before = remote.head()
    assert merge(remote, "--forge", "github") == 0
    out = capsys.readouterr().out
    sha = out.split()[-1]
    assert f"Merged pull request #{pr.number}" in out
    assert sha == remote.head()
    assert git("log", "-1", "--format=%P", sha, cwd=remote.path).split() == [main_before, head]
    assert git("log", "-1", "--format=%s", sha, cwd=remote.path).startswith(
        f"Merge pull request #{pr.number}"
    )
    assert remote.head("sluice/local/fraud-detector/v4") == head


def _fake_stack(state_dir: Path, remote: str) -> subprocess.Popen[bytes]:
    """A stack.json whose mlflow is a live process carrying its markers, as `up` writes it."""
    root = state_dir / "local"
    marker = str(root / "mlflow" / "artifacts")
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", marker])
    write_json(root / REMOTE_FILE, {"remote": remote, "env": "local"})
    write_json(
        root / STACK_FILE,
        {
            "mlflow": {
                "pid": process.pid, "port": 5999, "url": "http://127.0.0.1:5999",
                "markers": [sys.executable, marker],
            },
        },
    )  # fmt: skip
    return process


def test_commands_find_the_running_stack_and_env_exports_it(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a stack running in this checkout, its MLflow and remote are the defaults (shown as
    `local stack`), `local env` prints them as exports and `local url` prints a component; an
    environment variable still wins. Without one, `local env` is one line and exit 2."""
    assert main(["local", "env"]) == 2
    assert "the local stack is not running" in capsys.readouterr().err
    process = _fake_stack(checkout / ".sluice", "/srv/gitops.git")
    try:
        assert main(["local", "env"]) == 0
        exports = capsys.readouterr().out.splitlines()
        assert exports == [
            "export MLFLOW_TRACKING_URI=http://127.0.0.1:5999",
            "export SLUICE_GIT_REMOTE=/srv/gitops.git",
            f"export SLUICE_STATE_DIR={(checkout / '.sluice').resolve()}",
        ]
        assert main(["local", "url", "mlflow"]) == 0
        assert capsys.readouterr().out.strip() == "http://127.0.0.1:5999"
        assert main(["local", "url", "fraud-detector"]) == 2
        assert "no component, InferenceService or InferenceGraph 'fraud-detector'" in (
            capsys.readouterr().err
        )
        assert main(["config", "show"]) == 0
        shown = capsys.readouterr().out
        assert '"http://127.0.0.1:5999"  (local stack)' in shown
        assert '"/srv/gitops.git"  (local stack)' in shown
        assert main(["--mlflow-tracking-uri", "http://flag:1", "config", "show", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["mlflow_tracking_uri"] == "http://flag:1"
    finally:
        process.kill()
        process.wait()
    assert main(["config", "show", "--json"]) == 0  # stopped: the default again, remote kept
    shown = json.loads(capsys.readouterr().out)
    assert shown["mlflow_tracking_uri"] == "http://127.0.0.1:5000"
    assert shown["git_remote"] == "/srv/gitops.git"


def test_config_show_names_each_source(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flag, environment variable (by the name it was given), config file, default."""
    config = checkout / "sluice.yaml"
    config.write_text("serve_port: 9000\n")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    monkeypatch.setenv("SLUICE_POLL_INTERVAL_SECONDS", "5")
    settings = Settings(mlflow_tracking_uri="http://flag:1")
    sources = setting_sources(settings, config=None, flags={"mlflow_tracking_uri": "http://f"})
    assert sources["mlflow_tracking_uri"] == "flag"
    assert sources["github_token"] == "env GITHUB_TOKEN"
    assert sources["poll_interval_seconds"] == "env SLUICE_POLL_INTERVAL_SECONDS"
    assert sources["serve_port"] == "config file sluice.yaml"
    assert sources["git_remote"] == "default"


def test_local_up_seeds_a_remote_from_the_checkout(checkout: Path) -> None:
    """Without --repo, `local up`'s remote is .sluice/local/gitops.git, seeded once with the
    checkout's manifests/; --repo wins; no manifests/ is one line naming the fix."""
    from rich.console import Console

    from controller.commands.local import up_remote

    settings = Settings(state_dir=checkout / ".sluice")
    console = Console(file=io.StringIO())
    with pytest.raises(ConfigError, match=r"no manifests/ in .* pass --repo REMOTE"):
        up_remote(settings, None, console)
    subprocess.run(["cp", "-r", str(ROOT / "manifests"), str(checkout)], check=True)
    seeded = up_remote(settings, None, console)
    assert seeded == str((checkout / ".sluice" / "local" / "gitops.git").resolve())
    files = git("ls-tree", "-r", "--name-only", "main", cwd=Path(seeded)).splitlines()
    assert PIN in files
    assert up_remote(settings.model_copy(update={"git_remote": seeded}), None, console) == seeded
    assert up_remote(settings, "/elsewhere.git", console) == "/elsewhere.git"


def test_make_help_lists_every_target() -> None:
    """`make help` names every target the Makefile defines."""
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = {line.split()[0] for line in shown.splitlines()[1:] if line.strip()}
    assert listed == targets


def test_data_writes_a_week_for_drift_feedback_and_the_router(checkout: Path) -> None:
    """`python -m models.fraud_detector.data` writes a table with request ids and labels, the
    labels file `sluice feedback` reads, and V1 and V2 request bodies."""
    run = [sys.executable, "-m", "models.fraud_detector.data", "--week", "6", "--rows", "4"]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    subprocess.run([*run, "--out", "w.csv", "--labels", "l.csv"], env=env, check=True)
    subprocess.run([*run, "--out", "v1.json"], env=env, check=True)
    subprocess.run([*run, "--out", "v2.json", "--format", "v2"], env=env, check=True)
    table = (checkout / "w.csv").read_text().splitlines()
    assert table[0].startswith("request_id,amount,")
    assert table[0].endswith(",is_fraud")
    assert len(table) == 5
    labels = (checkout / "l.csv").read_text().splitlines()
    assert labels[0] == "request_id,label"
    assert [row.split(",")[0] for row in labels[1:]] == [row.split(",")[0] for row in table[1:]]
    assert len(json.loads((checkout / "v1.json").read_text())["instances"]) == 4
    inputs = json.loads((checkout / "v2.json").read_text())["inputs"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in inputs][:2] == [
        ("amount", "FP64", [4]),
        ("hour", "INT64", [4]),
    ]
    bad = subprocess.run([*run, "--out", "/nonexistent/x.csv"], env=env, capture_output=True)
    assert bad.returncode == 2
    assert b"give a writable --out" in bad.stderr


def test_local_up_checks_its_flags_before_seeding(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad flag is refused before the remote is seeded: the checkout stays as it was."""
    shutil.copytree(ROOT / "manifests", checkout / "manifests")
    assert main(["local", "up", "--port-base", "80"]) == 2
    assert "--port-base 80 is out of range" in capsys.readouterr().err
    assert not (checkout / ".sluice").exists()
