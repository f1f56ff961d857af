"""Hostile and odd input, driven through the ``sluice`` script as a user runs it.

Each probe runs the installed console script in a subprocess and asserts what a user sees: the
exit code, exactly one line on stderr with the phrase that explains it, no traceback, and that
the Git remote and the registry are as they were wherever the command could have written.
Probes that need a registry use the session's real MLflow server (``mlflow_server``).
"""

from __future__ import annotations

import http.server
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from support.gitops_repo import commit_to_remote, seed_manifests, snapshot
from support.gitrepo import GitRemote, git

from controller.analysis_types import LoadPlan
from controller.backends.locust_load import LocustLoadGenerator
from controller.errors import InputError, ManifestInvalid
from controller.local.processes import free_port
from controller.local.services import MlflowService
from controller.manifests.render import render_overlay
from controller.settings import load_settings
from controller.text.ref_names import (
    is_valid_branch_name,
    validate_environment_name,
    validate_model_name,
)

SLUICE = Path(sys.executable).with_name("sluice")
ROOT = Path(__file__).resolve().parents[1]
PIN = "manifests/overlays/staging/fraud-detector.yaml"
ENVIRONMENT = "manifests/overlays/staging/sluice.yaml"


def user_environment(**extra: str) -> dict[str, str]:
    """The caller's environment without any ``SLUICE_*`` setting: Sluice's defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "MLFLOW_"))}
    env.update(extra)
    return env


def sluice(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    memory_limit: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the ``sluice`` script; ``memory_limit`` caps its address space (and its children's)
    so that a probe that would exhaust the machine on broken code fails instead."""

    def limit() -> None:  # pragma: no cover - runs in the child
        if memory_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run(
        [str(SLUICE), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env if env is not None else user_environment(),
        timeout=timeout,
        check=False,
        preexec_fn=limit,
    )


def refused(result: subprocess.CompletedProcess[str], code: int, phrase: str) -> str:
    """Assert the exit code, one line on stderr containing ``phrase`` and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert phrase in lines[0], lines[0]
    return lines[0]


def registry_state(tracking_uri: str, model: str) -> list[tuple[str, dict[str, str], list[str]]]:
    """Every version of ``model`` with its tags and aliases: equal states, nothing written."""
    client = MlflowClient(tracking_uri)
    versions = client.search_model_versions(f"name = '{model}'")
    return sorted((v.version, dict(v.tags), sorted(v.aliases)) for v in versions)


def register_source(tracking_uri: str, model: str, source: str) -> int:
    """Register a version of ``model`` whose artifacts the registry says are at ``source``."""
    client = MlflowClient(tracking_uri)
    try:
        client.get_registered_model(model)
    except Exception:  # MLflow's not-found is an MlflowException
        client.create_registered_model(model)
    version = client.create_model_version(model, source)
    client.set_registered_model_alias(model, "challenger", version.version)
    return int(version.version)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory that is neither the repository nor the state directory's parent."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def propose_env(tracking_uri: str, remote: GitRemote) -> dict[str, str]:
    return user_environment(MLFLOW_TRACKING_URI=tracking_uri, SLUICE_GIT_REMOTE=remote.url)


# -- Part 1: paths are absolute, whatever the working directory ------------------------------


def test_default_state_dir_is_shown_absolute(workdir: Path) -> None:
    """With no SLUICE_STATE_DIR and no config file, `config show` prints an absolute state
    directory under the working directory, not the relative `.sluice`."""
    result = sluice("config", "show", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["state_dir"] == str(workdir.resolve() / ".sluice")


def test_relative_paths_in_a_config_file_are_resolved_at_load(workdir: Path) -> None:
    """A relative path from the config file means the working directory at load time."""
    (workdir / "sluice.yaml").write_text("state_dir: state\nprediction_log_path: p.sqlite\n")
    shown = json.loads(sluice("config", "show", "--json", cwd=workdir).stdout)
    assert shown["state_dir"] == str(workdir.resolve() / "state")
    assert shown["prediction_log_path"] == str(workdir.resolve() / "p.sqlite")


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"predictions": [0]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _load_plan(url: str, report_dir: Path) -> LoadPlan:
    row = {"amount": 12.5, "hour": 3, "merchant_category": "grocery", "country": "DE"}
    return LoadPlan(
        url, "fraud", "v1", (row,), users=1, spawn_rate=1, duration_seconds=1,
        report_dir=report_dir,
    )  # fmt: skip


def test_locust_gate_starts_with_the_default_state_dir_from_another_cwd(
    echo_url: str, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's report: default settings, run from some directory; the load test's reports
    go under `<state_dir>/reports` as `sluice rollout` puts them, and Locust must find its
    payloads there (it runs with the report directory as its cwd)."""
    monkeypatch.delenv("SLUICE_STATE_DIR", raising=False)
    monkeypatch.delenv("SLUICE_CONFIG", raising=False)
    monkeypatch.chdir(workdir)
    settings = load_settings()
    assert settings.state_dir.is_absolute()
    report_dir = settings.state_dir / "reports" / "pass-1" / "load-test"
    report = LocustLoadGenerator().run(_load_plan(echo_url, report_dir))
    assert report.requests > 0
    assert report.failures == 0
    assert (workdir / ".sluice" / "reports" / "pass-1" / "load-test" / "payloads.json").is_file()


def test_locust_never_hands_its_child_a_relative_path(
    echo_url: str, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even given a relative report directory, the child gets absolute paths."""
    monkeypatch.chdir(workdir)
    report = LocustLoadGenerator().run(_load_plan(echo_url, Path("reports/relative")))
    assert report.requests > 0
    assert report.report_path == workdir.resolve() / "reports" / "relative" / "locust.json"


# -- bad settings: one line, exit 2, on every command ----------------------------------------


@pytest.mark.parametrize(
    ("variables", "args", "phrase"),
    [
        ({"SLUICE_POLL_INTERVAL_SECONDS": "-1"}, ["config", "show"], "poll_interval_seconds"),
        ({"SLUICE_POLL_INTERVAL_SECONDS": "abc"}, ["status"], "poll_interval_seconds"),
        ({"SLUICE_RETRAIN_ALERTS": "abc"}, ["config", "show"], "SLUICE_RETRAIN_ALERTS"),
        ({"SLUICE_RETRAIN_ALERTS": "abc"}, ["status"], "SLUICE_RETRAIN_ALERTS"),
        ({"SLUICE_RETRAIN_COMMAND": "[1"}, ["local", "status"], "SLUICE_RETRAIN_COMMAND"),
        ({"SLUICE_SERVE_PORT": "70000"}, ["config", "show"], "serve_port"),
    ],
)
def test_bad_environment_values_are_one_line(
    workdir: Path, variables: dict[str, str], args: list[str], phrase: str
) -> None:
    result = sluice(*args, cwd=workdir, env=user_environment(**variables))
    refused(result, 2, phrase)


def test_negative_poll_interval_flag_is_refused(workdir: Path, git_remote: GitRemote) -> None:
    """`serve --poll-interval -1` was copied into the settings unvalidated (and served)."""
    result = sluice(
        "serve", "--poll-interval", "-1", "--port", "0", "--repo", git_remote.url,
        cwd=workdir, timeout=60,
    )  # fmt: skip
    refused(result, 2, "poll_interval_seconds")


# -- YAML: anchors and aliases refused, sizes capped ------------------------------------------

BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_settings_file_with_anchors_is_refused(workdir: Path) -> None:
    config = workdir / "sluice.yaml"
    config.write_text("serve_host: &h 127.0.0.1\nargocd_url: *h\n")
    refused(sluice("config", "show", cwd=workdir), 2, "anchor 'h' at line 1 is refused")


def test_oversized_settings_file_is_refused(workdir: Path) -> None:
    config = workdir / "sluice.yaml"
    config.write_text("# padding\n" * 110_000 + "serve_port: 9000\n")
    refused(sluice("config", "show", cwd=workdir), 2, "over the 1 MiB limit of a settings file")


def test_oversized_feedback_file_is_refused(workdir: Path) -> None:
    """A feedback table over 256 MiB is refused before pandas reads it (a sparse file here)."""
    table = workdir / "labels.csv"
    with table.open("wb") as handle:
        handle.write(b"request_id,label\n")
        handle.truncate(257 * 1024 * 1024)
    refused(
        sluice("feedback", str(table), cwd=workdir),
        2,
        "over the 256 MiB limit of a feedback file",
    )


@pytest.mark.slow
def test_billion_laughs_pin_is_refused_fast(
    mlflow_server: MlflowService, remote: GitRemote, model: str, workdir: Path, tmp_path: Path
) -> None:
    """A pin with nested aliases (kustomize expanded one to 13 GB) is refused before kustomize
    runs: exit 2 in seconds, nothing pushed, the registry untouched. The address space of the
    run is capped so that broken code fails the test instead of the machine."""

    def bomb(tree: Path) -> None:
        pin = tree / PIN
        pin.write_text(pin.read_text() + "\n---\n" + BOMB)

    commit_to_remote(remote, tmp_path / "bomb", "A hostile pin", bomb)
    register_source(mlflow_server.tracking_uri, model, "s3://models/fraud/1")
    refs, registry = snapshot(remote), registry_state(mlflow_server.tracking_uri, model)
    started = time.monotonic()
    result = sluice(
        "propose", model, "--env", "staging",
        cwd=workdir, env=propose_env(mlflow_server.tracking_uri, remote),
        memory_limit=6 * 1024**3, timeout=120,
    )  # fmt: skip
    line = refused(result, 2, "is refused (anchors and aliases can expand without bound)")
    assert PIN in line
    assert time.monotonic() - started < 60
    assert snapshot(remote) == refs
    assert registry_state(mlflow_server.tracking_uri, model) == registry


def test_environment_file_with_an_alias_is_refused(
    remote: GitRemote, model: str, workdir: Path, tmp_path: Path
) -> None:
    """The environment (policy) file from Git is read before the registry: no registry needed."""

    def alias(tree: Path) -> None:
        path = tree / ENVIRONMENT
        path.write_text("x-steps: &steps [10, 50]\n" + path.read_text())

    commit_to_remote(remote, tmp_path / "alias", "An anchored environment", alias)
    refs = snapshot(remote)
    env = user_environment(
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}", SLUICE_GIT_REMOTE=remote.url
    )
    result = sluice("propose", model, "--env", "staging", cwd=workdir, env=env)
    line = refused(result, 2, "YAML anchor 'steps' at line 1 is refused")
    assert ENVIRONMENT in line
    assert snapshot(remote) == refs


def test_kustomize_over_its_memory_limit_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child's address space is bounded; a render that exceeds it is ManifestInvalid."""
    monkeypatch.setattr("controller.manifests.render.KUSTOMIZE_MEMORY_BYTES", 32 * 1024 * 1024)
    with pytest.raises(ManifestInvalid, match=r"kubectl kustomize .*staging failed: ") as caught:
        render_overlay(ROOT / "manifests" / "overlays" / "staging")
    assert "\n" not in str(caught.value)


def test_kustomize_over_its_time_limit_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.manifests.render.KUSTOMIZE_TIMEOUT_SECONDS", 0.001)
    with pytest.raises(ManifestInvalid, match=r"staging did not finish within"):
        render_overlay(ROOT / "manifests" / "overlays" / "staging")


def test_anchored_overlay_file_is_refused_before_kustomize(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(BOMB)
    with pytest.raises(ManifestInvalid, match=r"kustomization\.yaml: YAML anchor 'a' at line 1"):
        render_overlay(overlay)


# -- names that cannot be Git refs -----------------------------------------------------------

BAD_NAMES = [
    "fd x", "fd..evil", "fd.lock", "fd@{1}", "-fd", "fd/", "fd~1", "fd^", "fd:x", "fd?",
    "fd*", "fd[", "fd\\x", ".fd", "fd.", "a/b",
]  # fmt: skip


def _git_accepts(name: str, cwd: Path) -> bool:
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", name], cwd=cwd, capture_output=True, check=False
    )
    return done.returncode == 0


def test_branch_name_rules_agree_with_git(tmp_path: Path) -> None:
    """Property-style: on fixed and random candidates Sluice's verdict equals
    `git check-ref-format --branch`'s."""
    git("init", "--quiet", tmp_path / "repo")
    alphabet = [*"ab-_./@{}~^:?*[\\ \t\x7f", ".lock", "..", "HEAD", "é", "//"]
    rng = random.Random(13)
    candidates = [*BAD_NAMES, "fraud-detector", "fd_2.v1", "naïve", "@", "x/y", "HEAD", "a./b"]
    candidates += ["".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(300)]
    disagree = [
        name
        for name in candidates
        if is_valid_branch_name(name) != _git_accepts(name, tmp_path / "repo")
    ]
    assert disagree == []


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_by_the_validators(name: str) -> None:
    with pytest.raises(InputError, match="cannot be part of a Git branch name"):
        validate_model_name(name)
    with pytest.raises(InputError, match="cannot be part of a Git branch name"):
        validate_environment_name(name)


def test_good_names_pass() -> None:
    assert validate_model_name("fraud-detector_2.v1") == "fraud-detector_2.v1"
    assert validate_environment_name("staging") == "staging"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fd x", "fd..evil", "fd.lock", "fd@{1}"])
def test_model_name_git_refuses_is_exit_2_before_git(
    mlflow_server: MlflowService, git_remote: GitRemote, name: str, workdir: Path, tmp_path: Path
) -> None:
    """MLflow accepts these names and the environment lists the model, so the proposal would
    reach `git checkout -B sluice/staging/<name>/v1`: refused first, with one line."""
    model = (
        f"{name}-{uuid.uuid4().hex[:6]}" if name != "fd.lock" else f"{uuid.uuid4().hex[:6]}.lock"
    )
    seed_manifests(git_remote, tmp_path / "seed", model=model)
    register_source(mlflow_server.tracking_uri, model, "s3://models/fraud/1")
    refs, registry = snapshot(git_remote), registry_state(mlflow_server.tracking_uri, model)
    result = sluice(
        "propose", model, "--env", "staging",
        cwd=workdir, env=propose_env(mlflow_server.tracking_uri, git_remote),
    )  # fmt: skip
    refused(result, 2, f"model name {model!r} cannot be part of a Git branch name")
    assert snapshot(git_remote) == refs
    assert registry_state(mlflow_server.tracking_uri, model) == registry


@pytest.mark.parametrize(
    "args",
    [
        ["rollout", "fd x", "--env", "staging", "--once"],
        ["rollback", "fd..evil", "--env", "staging", "--reason", "x"],
        ["status", "--env", "bad env"],
        ["local", "up", "--env", "../etc"],
    ],
)
def test_names_are_checked_by_every_command(
    args: list[str], workdir: Path, git_remote: GitRemote
) -> None:
    env = user_environment(SLUICE_GIT_REMOTE=git_remote.url)
    refused(sluice(*args, cwd=workdir, env=env), 2, "cannot be part of a Git branch name")
    assert not (workdir / ".sluice" / "local").exists()


# -- storage URIs ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        ("s3://models/my model/1", "contains a space"),
        ("s3://models/fraud/1\nkind: Secret", "contains the character '\\n'"),
        ("s3://models/fraud/\x07", "contains the character '\\x07'"),
    ],
)
def test_storage_uri_with_spaces_or_controls_is_refused(
    mlflow_server: MlflowService, remote: GitRemote, model: str, workdir: Path,
    source: str, phrase: str,
) -> None:  # fmt: skip
    register_source(mlflow_server.tracking_uri, model, source)
    refs, registry = snapshot(remote), registry_state(mlflow_server.tracking_uri, model)
    result = sluice(
        "propose", model, "--env", "staging",
        cwd=workdir, env=propose_env(mlflow_server.tracking_uri, remote),
    )  # fmt: skip
    refused(result, 2, phrase)
    assert snapshot(remote) == refs
    assert registry_state(mlflow_server.tracking_uri, model) == registry


# -- --forge choices --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["rollout", "fraud-detector", "--env", "staging", "--forge", "gitlab"],
        ["rollback", "fraud-detector", "--env", "staging", "--reason", "x", "--forge", "gitlab"],
        ["propose", "fraud-detector", "--env", "staging", "--forge", "gitlab"],
        ["serve", "--forge", "gitlab"],
        ["local", "merge", "fraud-detector", "--env", "staging", "--forge", "gitlab"],
    ],
)
def test_unknown_forge_is_a_usage_error_everywhere(args: list[str], workdir: Path) -> None:
    """One choice list for every command: `--forge gitlab` no longer means GitHub, and is
    refused in one line."""
    result = sluice(*args, cwd=workdir, env=user_environment(GITHUB_TOKEN="t"))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line == "sluice: error: --forge: 'gitlab' is not one of 'local', 'github'"


# -- sluice local up --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--port-base", "65530"], "--port-base 65530 is out of range"),
        (["--port-base", "80"], "must be between 1024 and 65436"),
        (["--repo", "does/not/exist"], "--repo does/not/exist does not exist"),
        (["--propagate-header", "X-("], "--propagate-header 'X-(' is not a regular expression"),
    ],
)
def test_local_up_checks_its_flags_before_starting_anything(
    args: list[str], phrase: str, workdir: Path, git_remote: GitRemote
) -> None:
    full = ["local", "up", *args]
    if "--repo" not in args:
        full += ["--repo", git_remote.url]
    refused(sluice(*full, cwd=workdir, timeout=60), 2, phrase)
    assert not (workdir / ".sluice" / "local").exists()


def test_local_up_refuses_a_directory_that_is_not_a_repository(workdir: Path) -> None:
    (workdir / "plain").mkdir()
    result = sluice("local", "up", "--repo", "plain", cwd=workdir, timeout=60)
    refused(result, 2, "--repo plain is not a Git repository")


# -- Git errors keep their message ------------------------------------------------------------


@pytest.mark.slow
def test_refused_push_shows_the_hooks_reason(
    mlflow_server: MlflowService, remote: GitRemote, model: str, workdir: Path
) -> None:
    hook = remote.path / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes need change ticket CHG-42' >&2\nexit 1\n")
    hook.chmod(0o755)
    register_source(mlflow_server.tracking_uri, model, "s3://models/fraud/1")
    refs, registry = snapshot(remote), registry_state(mlflow_server.tracking_uri, model)
    result = sluice(
        "propose", model, "--env", "staging",
        cwd=workdir, env=propose_env(mlflow_server.tracking_uri, remote),
    )  # fmt: skip
    line = refused(result, 2, "was refused")
    assert "pushes need change ticket CHG-42" in line
    assert "pre-receive hook declined" in line
    assert snapshot(remote) == refs
    assert registry_state(mlflow_server.tracking_uri, model) == registry


# -- an unexpected exception ------------------------------------------------------------------


def _corrupt_runtime_state(workdir: Path) -> None:
    # A runtime file from another version of Sluice, or edited by hand: valid JSON, wrong shape.
    local = workdir / ".sluice" / "local"
    local.mkdir(parents=True)
    (local / "runtime.json").write_text('{"inferenceServices": {"fraud": 1}}')


def test_unexpected_exception_exits_70_and_says_where_the_traceback_is(workdir: Path) -> None:
    _corrupt_runtime_state(workdir)
    result = sluice("local", "status", cwd=workdir)
    assert result.returncode == 70, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("sluice: internal error: TypeError: ")
    logs = list((workdir / ".sluice").glob("crash-*.log"))
    assert len(logs) == 1
    assert str(logs[0]) in line
    assert "Traceback (most recent call last)" in logs[0].read_text()


def test_verbose_prints_the_traceback_of_an_unexpected_exception(workdir: Path) -> None:
    _corrupt_runtime_state(workdir)
    result = sluice("--verbose", "local", "status", cwd=workdir)
    assert result.returncode == 70
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("sluice: internal error:")
