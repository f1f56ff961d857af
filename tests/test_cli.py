"""The ``sluice`` command line: version, help, configuration and how errors reach the user."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.registry import register_version

from controller import __version__
from controller.cli import main
from controller.local.services import MlflowService


def sluice(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run the installed console script as a user does."""
    script = Path(sys.executable).with_name("sluice")
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )


def test_version_prints_the_package_version() -> None:
    """`sluice --version` prints the version and exits 0."""
    result = sluice("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"sluice {__version__}"


def test_help_lists_the_commands() -> None:
    """`sluice --help` shows the commands a user starts from."""
    result = sluice("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout
    assert "config" in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    """An unknown command exits 2."""
    assert sluice("deploy-everything").returncode == 2


def test_config_schema_documents_every_setting() -> None:
    """The JSON schema names each setting with a description."""
    result = sluice("config", "schema")
    schema = json.loads(result.stdout)
    assert "mlflow_tracking_uri" in schema["properties"]
    assert all(field.get("description") for field in schema["properties"].values())


def test_settings_precedence_is_env_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The environment overrides the config file, which overrides the defaults."""
    config = tmp_path / "sluice.yaml"
    config.write_text(
        "mlflow_tracking_uri: http://from-file:5000\ngithub_api_url: http://ghe/api/v3\n"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert main(["--config", str(config), "config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["mlflow_tracking_uri"] == "http://from-env:5000"
    assert shown["github_api_url"] == "http://ghe/api/v3"


def test_malformed_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Malformed YAML in the config file names the file and line, in one line, exit 2."""
    config = tmp_path / "sluice.yaml"
    config.write_text("mlflow_tracking_uri: [unclosed\n")
    result = sluice("--config", str(config), "config", "show")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"config file {config}: malformed YAML at line" in result.stderr


def test_invalid_setting_names_the_setting(tmp_path: Path) -> None:
    """A setting of the wrong type is named with the file it came from."""
    config = tmp_path / "sluice.yaml"
    config.write_text("registry_request_retries: many\n")
    result = sluice("--config", str(config), "config", "show")
    assert result.returncode == 2
    assert "setting registry_request_retries (from" in result.stderr


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    """A typo in the config file is an error, not silently ignored."""
    config = tmp_path / "sluice.yaml"
    config.write_text("mlflow_trackin_uri: http://x\n")
    result = sluice("--config", str(config), "config", "show")
    assert result.returncode == 2
    assert "mlflow_trackin_uri" in result.stderr


def test_token_is_never_shown(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`config show` masks the GitHub token."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_supersecretvalue123")
    assert main(["config", "show", "--json"]) == 0
    out = capsys.readouterr().out
    assert "ghp_supersecretvalue123" not in out
    assert json.loads(out)["github_token"] == "**********"


def test_errors_are_redacted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A secret inside an error message never reaches stderr."""
    config = tmp_path / "ghp_leakytoken999.yaml"
    env = {"PATH": "/usr/bin:/bin", "GITHUB_TOKEN": "ghp_leakytoken999"}
    result = sluice("--config", str(config), "config", "show", env=env)
    assert result.returncode == 2
    assert "ghp_leakytoken999" not in result.stderr
    assert "***" in result.stderr


def test_demo_outside_a_checkout_says_where_to_run_it(tmp_path: Path) -> None:
    """`sluice demo` away from the repository root exits 2 and says where to run it."""
    result = sluice("demo", cwd=tmp_path)
    assert result.returncode == 2
    assert "run `make demo` from the repository root" in result.stderr


def test_flag_overrides_environment(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A command-line flag beats the environment."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert main(["--mlflow-tracking-uri", "http://from-flag:5000", "config", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mlflow_tracking_uri"] == "http://from-flag:5000"


def _command_paths(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group of the CLI, as the words a user types after `sluice`."""
    paths = [prefix]
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        paths += _command_paths(sub, (*prefix, name))
    return paths


#: The commands that talk to a forge: each offers the same choices, checked the same way.
FORGE_COMMANDS = [
    ("propose", "fraud-detector", "--env", "local"),
    ("serve",),
    ("rollout", "fraud-detector", "--env", "local"),
    ("rollback", "fraud-detector", "--env", "local", "--reason", "x"),
    ("local", "merge", "fraud-detector", "--env", "local"),
    ("init", "fraud-detector", "--env", "local"),
    ("graph", "propose", "market-regime", "--env", "local", "--spec", "graph.yaml"),
]


def test_help_texts_show_flags_as_flags_and_one_forge_choice_list(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`sluice --help` and every subcommand's `--help`: no `<bool>` beside a flag (`--dry-run`,
    `--wait/--no-wait`, `--help`) and no Python type beside any value (`--env ENV`, not
    `--env <str>`; `--current FILE`, not `<path>`), and wherever `--forge` appears it reads
    `[local|github]`, default local."""
    import typer

    from controller.cli import app

    monkeypatch.setenv("COLUMNS", "200")  # one row per option: nothing folds mid-metavar
    paths = _command_paths(typer.main.get_command(app))
    assert {("propose",), ("local", "merge"), ("status",), ("config", "show")} <= set(paths)
    with_forge = []
    for path in paths:
        assert main([*path, "--help"]) == 0, path
        text = capsys.readouterr().out
        assert not re.search(r"<(bool|str|int|float|path)>", text), (path, text)
        rows = [line.strip("│ ").removeprefix("* ").split() for line in text.splitlines()]
        forge = [row for row in rows if row[:1] == ["--forge"]]
        if forge:
            with_forge.append(path[: 2 if path[0] == "local" else 1])
            (line,) = forge
            assert line[1] == "[local|github]", (path, line)
            assert "[default: local]" in text, path
    assert sorted(with_forge) == sorted(c[: 2 if c[0] == "local" else 1] for c in FORGE_COMMANDS)
    assert "--dry-run   " in next(
        line for line in sluice("propose", "--help").stdout.splitlines() if "--dry-run" in line
    )
    drift = sluice("drift", "--help").stdout.splitlines()
    assert next(line for line in drift if "--current" in line).split()[2:4] == ["--current", "FILE"]
    assert next(line for line in drift if "--version" in line).split()[1:3] == [
        "--version",
        "VERSION",
    ]


@pytest.mark.parametrize("args", FORGE_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_an_unknown_forge_is_one_line_and_exit_2_on_every_command(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    """`--forge gitlab` is refused before anything runs: one line naming the choices, exit 2."""
    result = sluice(*args, "--forge", "gitlab", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "sluice: error: --forge: 'gitlab' is not one of 'local', 'github'\n"
    ), result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["propose", "fd x", "--env", "local"],
        ["serve", "--poll-interval", "-1"],
        ["rollout", "fraud-detector", "--env", "a b"],
        ["rollback", "fraud-detector", "--env", "a b", "--reason", "x"],
        ["status", "--env", "a b"],
    ],
    ids=lambda a: a[0],
)
def test_bad_input_is_refused_before_the_registry_client_loads(args: list[str]) -> None:
    """A command checks its names and settings before it imports the registry client and the
    rollout machinery, so a typo is answered at once."""
    code = (
        "import sys\n"
        "from controller.cli import main\n"
        f"status = main({args!r})\n"
        "heavy = ('mlflow', 'controller.commands.rollout')\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "print(status, loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "2 []", (done.stdout, done.stderr)


def test_the_commands_load_no_statistics_library_until_they_compute() -> None:
    """Every command that reads an environment (propose, status, rollout, init) parses its
    policy, and propose renders a model card; the statistics behind the gates and the card
    load scipy's statistics and scikit-learn only when they compute, so a command does not
    pay their imports (about 0.7 s of CPU, 40 % of a `sluice status`) to parse a config.
    Nor pandas (0.15 s): the card reads a data profile, which only building one needs it for;
    nor pandera (0.11 s more), which only training's data contract runs."""
    code = (
        "import sys\n"
        "import controller.commands.propose, controller.commands.status\n"
        "import controller.commands.rollout, controller.commands.init\n"
        "import controller.drift, controller.shadow.judge\n"
        "heavy = ('scipy.stats', 'scipy.special', 'scipy.spatial', 'sklearn', 'pandas',\n"
        "         'pandera')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "[]", (done.stdout, done.stderr)


@pytest.mark.parametrize(
    ("modules", "not_loaded"),
    [
        # Every command: the root options, help, settings.
        (["controller.cli"], ["numpy", "pandas", "jsonschema", "git", "requests"]),
        # An environment's config (judge, shadow and KPI policies) needs none of the statistics.
        (["controller.manifests.environment"], ["numpy", "jsonschema"]),
        # propose and init: the model card reads a profile; manifests validate when rendered.
        (["controller.commands.propose", "controller.commands.init"], ["numpy", "jsonschema"]),
        # sluice local status: the runtime's state, not its model server.
        (["controller.commands.local_status", "controller.local.runtime"], ["numpy", "pandas"]),
        # sluice serve: the feedback route stores labels; reading a label file needs pandas.
        (["controller.commands.serve"], ["pandas"]),
        # sluice lineage takes a target from the rollout's backends, not the rollout's judges.
        (["controller.commands.lineage"], ["numpy", "jsonschema"]),
    ],
    ids=["cli", "environment", "propose-init", "local-status", "serve", "lineage"],
)
def test_a_command_starts_without_the_libraries_only_its_work_needs(
    modules: list[str], not_loaded: list[str]
) -> None:
    """What each command imports to start: numpy (about 35 ms of CPU), jsonschema (30 ms),
    pandas (150 ms) load with the functions that compute, validate or read tables, not with
    the modules on the way to them (`benchmarks/command_start.py` measures the commands)."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in {not_loaded!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "[]", (done.stdout, done.stderr)


@pytest.mark.slow
def test_a_command_that_reads_the_registry_imports_no_mlflow(
    mlflow_server: MlflowService, tmp_path: Path
) -> None:
    """`sluice drift` resolves a version and lists its run's artifacts, and the registry adapter
    reads the version's MLmodel, input example and run, all through the tracking server's REST
    API: no `mlflow` module is loaded (importing MLflow's client cost every such command about
    0.9 s of CPU)."""
    uri = mlflow_server.tracking_uri
    name = f"probe-{uuid.uuid4().hex[:8]}"
    register_version(uri, name, alias="champion", input_example=True)
    (tmp_path / "now.csv").write_text("amount,hour\n12.5,3\n30.0,14\n")
    code = (
        "import sys\n"
        "from controller.cli import main\n"
        f"status = main(['--mlflow-tracking-uri', {uri!r}, 'drift', {name!r}, '--current', "
        "'now.csv'])\n"
        "from controller.backends.mlflow_registry import MlflowRegistry\n"
        f"registry = MlflowRegistry({uri!r})\n"
        f"version = registry.resolve({name!r}, alias='champion')\n"
        "rows = registry.input_rows(version.name, version.version, 2)\n"
        "flavours = sorted(registry.mlmodel(version.name, version.version)['flavors'])\n"
        "metrics = sorted(registry.run_summary(str(version.run_id)).metrics)\n"
        "loaded = sorted(m for m in sys.modules if m.partition('.')[0] == 'mlflow')\n"
        "print(status, len(rows), flavours, metrics, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.stdout.strip().splitlines()[-1:] == [
        "2 2 ['python_function', 'sklearn'] ['pr_auc', 'roc_auc'] []"
    ], (done.stdout, done.stderr)
    assert "has no reference profile" in done.stderr
