"""The ``sluice`` command line: the composition root, and the only place errors become exit codes.

Every failure Sluice anticipates is a :class:`~controller.errors.SluiceError`; :func:`main` prints
it as one line on stderr (secrets redacted) and exits with its code. ``--verbose`` adds the
traceback for the cases where one line is not enough.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from controller import __version__
from controller.cli_options import (
    current_settings,
    current_sources,
    forge_name,
    forge_option,
    plain_flags,
    set_root_options,
    verbose_requested,
)
from controller.cli_quarantine import quarantine_app
from controller.cli_rollout import rollout_app
from controller.errors import ExitCode, InputError, SluiceError
from controller.redact import redact
from controller.ref_names import validate_environment_name, validate_model_name
from controller.settings import Settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="sluice",
    help="GitOps deployment controller for ML models: registry -> Git -> gated canary.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


config_app = typer.Typer(help="Inspect Sluice's configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sluice {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks with errors.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="YAML config file (default: ./sluice.yaml if present, or $SLUICE_CONFIG).",
            dir_okay=False,
        ),
    ] = None,
    mlflow_tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--mlflow-tracking-uri",
            help="MLflow tracking server (overrides MLFLOW_TRACKING_URI and the config file).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    set_root_options(verbose=verbose, config=config, mlflow_tracking_uri=mlflow_tracking_uri)


class SchemaKind(StrEnum):
    """Which configuration's schema to print."""

    settings = "settings"
    environment = "environment"


@config_app.command("schema")
def config_schema(
    kind: Annotated[
        SchemaKind,
        typer.Argument(help="settings (sluice.yaml, env) or environment (overlay sluice.yaml)."),
    ] = SchemaKind.settings,
) -> None:
    """Print a JSON schema: every option, its type, default and meaning."""
    if kind is SchemaKind.environment:
        from controller.environment import EnvironmentConfig

        typer.echo(json.dumps(EnvironmentConfig.model_json_schema(by_alias=True), indent=2))
        return
    typer.echo(json.dumps(Settings.model_json_schema(by_alias=False), indent=2))


@config_app.command("show")
def config_show(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the values only, as JSON.")
    ] = False,
) -> None:
    """Print the settings in effect, secrets masked, and where each came from (flag, env,
    config file, local stack, default)."""
    settings = current_settings()
    values = settings.model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    sources = current_sources(settings)
    for name, value in values.items():
        typer.echo(f"{name:<34} {json.dumps(value)}  ({sources[name]})")


@app.command()
def propose(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    env: Annotated[str, typer.Option("--env", help="Environment (manifests/overlays/ENV).")],
    version: Annotated[
        int | None, typer.Option(help="Registry version to propose (default: follow --alias).")
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option(help="Registry alias to resolve (default: the environment's, challenger)."),
    ] = None,
    forge: Annotated[
        str, forge_option("local: push a branch and print the merge; github: open a PR too.")
    ] = "local",
    repo: Annotated[
        str | None, typer.Option(help="Git remote (default: SLUICE_GIT_REMOTE, else origin).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the diff and message; change nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            hidden=True,
            help="No longer proposes a quarantined version: lift its quarantine instead "
            "(sluice quarantine lift), which records why.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Propose a registry version for an environment: a branch and (GitHub) a pull request."""
    if version is not None and alias is not None:
        raise typer.BadParameter("give --version or --alias, not both")
    if force:
        raise InputError(
            "--force no longer proposes a quarantined version (the rollout would roll it "
            "straight back): lift its quarantine with `sluice quarantine lift MODEL VERSION "
            "--reason TEXT`, which records why"
        )
    validate_model_name(model)
    validate_environment_name(env)
    settings = current_settings()
    # Imported once the input is checked: bad input is refused in a fraction of a second.
    from controller.commands_propose import run_propose
    from controller.propose import ProposalRequest

    run_propose(
        settings,
        ProposalRequest(
            model=model, environment=env, version=version, alias=alias,
            dry_run=dry_run,
        ),
        forge=forge_name(forge),
        remote=repo,
        as_json=as_json,
        console=Console(),
    )  # fmt: skip


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8686; 0 picks one).")] = None,
    poll_interval: Annotated[
        float | None, typer.Option(help="Seconds between passes (default 60).")
    ] = None,
    forge: Annotated[str, forge_option("Where proposals go.")] = "local",
    repo: Annotated[
        str | None, typer.Option(help="Git remote (default: SLUICE_GIT_REMOTE, else origin).")
    ] = None,
    rollouts: Annotated[
        str,
        typer.Option(
            "--rollouts",
            metavar="[local|kubernetes|off]",
            help="Also walk merged versions through their canaries on this target "
            "(local, kubernetes) or not at all (off).",
        ),
    ] = "off",
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            metavar="ENV",
            help="Watch and roll out only this environment (manifests/overlays/ENV); "
            "repeat for several (default: every environment in Git).",
        ),
    ] = None,
) -> None:
    """Watch every release in Git (with --env, of those environments only) and propose when its
    alias moves, and (--rollouts) walk merged versions through their canaries; serve /healthz,
    /metrics, /hooks/mlflow and /hooks/alertmanager (drift alerts start retraining)."""
    for name in env or ():
        validate_environment_name(name)
    # Through validation like every other value: `--poll-interval -1` is refused, not used.
    settings = current_settings(
        serve_host=host, serve_port=port, poll_interval_seconds=poll_interval
    )
    target = _rollout_target(rollouts)
    # Imported once the input is checked: bad input is refused in a fraction of a second.
    from controller.commands_propose import build_forge, default_remote
    from controller.commands_serve import run_serve

    run_serve(
        settings,
        forge=build_forge(settings, forge_name(forge)),
        remote=repo or settings.git_remote or default_remote(),
        rollouts=target,
        environments=env or None,
    )


def _rollout_target(value: str) -> Literal["local", "kubernetes"] | None:
    if value == "off":
        return None
    if value in ("local", "kubernetes"):
        return "local" if value == "local" else "kubernetes"
    raise typer.BadParameter("--rollouts is local, kubernetes or off")


@app.command()
def drift(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    current: Annotated[
        Path, typer.Option("--current", help="Current data to compare: .csv or .parquet.")
    ],
    version: Annotated[
        int | None, typer.Option(help="Registry version (default: follow --alias).")
    ] = None,
    alias: Annotated[
        str | None, typer.Option(help="Registry alias to resolve (default: champion).")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write a self-contained HTML report to this file."),
    ] = None,
    threshold_config: Annotated[
        Path | None,
        typer.Option(
            "--threshold-config",
            help="YAML overriding drift_share and per-feature method/threshold.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Compare current data with a version's training profile; exit 1 when the dataset drifts."""
    from controller.commands_drift import DriftRequest, run_drift

    if version is not None and alias is not None:
        raise typer.BadParameter("give --version or --alias, not both")
    result = run_drift(
        current_settings(),
        DriftRequest(
            model=model, current=current, version=version, alias=alias,
            html=html, threshold_config=threshold_config, as_json=as_json,
        ),
        console=Console(),
    )  # fmt: skip
    if result.drifted:
        raise typer.Exit(int(ExitCode.GATE_FAILED))


@app.command()
def feedback(
    file: Annotated[
        Path, typer.Argument(help="CSV or Parquet file with columns request_id and label.")
    ],
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Send to a running `sluice serve` at http://HOST:PORT (token: "
            "SLUICE_FEEDBACK_TOKEN) instead of writing the prediction log.",
        ),
    ] = None,
) -> None:
    """Store late ground-truth labels for logged requests, so shadow evaluation can judge
    champion and challenger on them."""
    from controller.commands_feedback import run_feedback

    run_feedback(current_settings(), file, url=url, console=Console())


@app.command()
def init(
    model: Annotated[
        str | None, typer.Argument(help="Registered model to onboard (omit with --repo DIR).")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            help="Environment to onboard MODEL into; with --repo DIR, each environment to "
            "create (default: local, staging, production).",
        ),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(help="Registry version to read (default: challenger, else the newest)."),
    ] = None,
    from_registry: Annotated[
        bool,
        typer.Option(
            "--from-registry",
            help="Read the model from the MLflow registry (the default, and today the only "
            "source).",
        ),
    ] = True,
    repo: Annotated[
        str | None,
        typer.Option(
            metavar="DIR|REMOTE",
            help="Without MODEL: an empty directory to make a GitOps repository of. With "
            "MODEL: the Git remote to onboard into (default: SLUICE_GIT_REMOTE, else origin).",
        ),
    ] = None,
    repo_url: Annotated[
        str | None,
        typer.Option(help="With --repo DIR: the URL Argo CD clones (default: the directory)."),
    ] = None,
    forge: Annotated[
        str,
        forge_option(
            "With MODEL: local: push the init branch and print the merge; github: open its "
            "pull request too."
        ),
    ] = "local",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the diff; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Onboard a registered model into an environment (a branch to merge; --forge github: a
    pull request), or create a GitOps repository with the layout Sluice expects (--repo DIR)."""
    from controller.commands_init import run_init_model, run_init_repo

    envs = list(env or [])
    for name in envs:
        validate_environment_name(name)
    if model is None:
        if repo is None:
            raise InputError("give MODEL (with --env) to onboard, or --repo DIR to create a repo")
        if forge_name(forge) != "local":
            raise InputError(
                "--forge opens the pull request of an onboarding: give MODEL --env ENV with it, "
                "or drop --forge with --repo DIR"
            )
        run_init_repo(
            current_settings(), directory=Path(repo), console=Console(),
            envs=envs or ["local", "staging", "production"], repo_url=repo_url,
        )  # fmt: skip
        return
    validate_model_name(model)
    if len(envs) != 1:
        raise InputError(f"give one environment to onboard {model} into (--env ENV)")
    run_init_model(
        current_settings(), model=model, env=envs[0], version=version, remote=repo,
        dry_run=dry_run, as_json=as_json, console=Console(), forge=forge_name(forge),
    )  # fmt: skip


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Where the demo keeps its MLflow data and logs.")
    ] = Path(".sluice/demo"),
) -> None:
    """Run the loop on the embedded local stack and narrate it."""
    from controller.demo import run_demo
    from controller.local.extra import require_local_extra

    require_local_extra("sluice demo")
    run_demo(workdir=workdir, console=Console())


app.add_typer(rollout_app)
app.add_typer(quarantine_app, name="quarantine")

retrain_app = typer.Typer(help="Drift retraining: report its outcome.", no_args_is_help=True)
app.add_typer(retrain_app, name="retrain")


@retrain_app.command("report")
def retrain_report(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    env: Annotated[str, typer.Option("--env", help="Environment it was retrained for.")],
    outcome: Annotated[
        str | None,
        typer.Option(
            metavar="[succeeded|gate-failed|failed]",
            help="How it ended (or --exit-code).",
        ),
    ] = None,
    exit_code: Annotated[
        int | None,
        typer.Option(
            help="The training command's exit status: 0 succeeded, 1 gate-failed, other failed."
        ),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(help="The version it registered (default when it succeeded: challenger)."),
    ] = None,
    run_url: Annotated[
        str | None, typer.Option(help="Where it ran: the workflow run's URL.")
    ] = None,
    requested_at: Annotated[
        str | None,
        typer.Option(
            help="The dispatch's requested_at: only the retraining started then is finished."
        ),
    ] = None,
    detail: Annotated[str | None, typer.Option(help="What happened, in one line.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """Record how a retraining started through the forge ended (the train workflow's last
    step) and announce it, as a local retraining is when its process ends."""
    from controller.commands_retrain import run_report

    validate_model_name(model)
    validate_environment_name(env)
    run_report(
        current_settings(), model=model, env=env, outcome=outcome, exit_code=exit_code,
        version=version, run_url=run_url, requested_at=requested_at, detail=detail,
        as_json=as_json, console=Console(),
    )  # fmt: skip


local_app = typer.Typer(
    help="The embedded local target: MLflow, Prometheus, a KServe-like runtime and a status page.",
    no_args_is_help=True,
)
app.add_typer(local_app, name="local")


@local_app.command("up")
def local_up(
    env: Annotated[str, typer.Option("--env", help="Environment (manifests/overlays/ENV).")] = (
        "local"
    ),
    repo: Annotated[
        str | None,
        typer.Option(
            help="GitOps remote to sync (default: SLUICE_GIT_REMOTE, else "
            ".sluice/local/gitops.git, seeded from ./manifests); commands run here then use it."
        ),
    ] = None,
    port_base: Annotated[
        int | None,
        typer.Option(
            help="Ports from N (1024-65436): MLflow N, Alertmanager N+1, Prometheus N+2, "
            "status page N+3, routers N+10+."
        ),
    ] = None,
    rules_manifest: Annotated[
        Path | None,
        typer.Option(
            help="PrometheusRule whose rules Prometheus loads (default: "
            "manifests/monitoring/prometheus-rules.yaml here, else in the Sluice checkout)."
        ),
    ] = None,
    alert_for: Annotated[
        str | None,
        typer.Option(help="Replace the `for:` of each alert that has one (20s; drift says 10m)."),
    ] = None,
    rule_interval: Annotated[
        str | None, typer.Option(help="Replace each rule group's evaluation interval (e.g. 1s).")
    ] = None,
) -> None:
    """Start (or reuse) the local stack and sync ENV from Git; returns when it is ready."""
    from controller.commands_local import run_up
    from controller.local.extra import require_local_extra

    require_local_extra("sluice local up")
    run_up(
        current_settings(),
        env=env,
        remote=repo,
        port_base=port_base,
        console=Console(),
        rules_manifest=rules_manifest,
        alert_for=alert_for,
        rule_interval=rule_interval,
    )


@local_app.command("status")
def local_status(
    as_json: Annotated[
        bool, typer.Option("--json", help="KServe- and Argo CD-shaped JSON.")
    ] = False,
) -> None:
    """Show sync, health, revisions and traffic of each InferenceService, and the components."""
    from controller.commands_local import run_status

    run_status(current_settings(), as_json=as_json, console=Console())


@local_app.command("down")
def local_down() -> None:
    """Stop everything `sluice local up` started, and nothing else."""
    from controller.commands_local import run_down

    run_down(current_settings(), console=Console())


@local_app.command("serve-page", hidden=True)
def local_serve_page(
    state_dir: Annotated[Path, typer.Option(help="The stack's state directory.")],
    env: Annotated[str, typer.Option("--env", help="Environment the stack syncs.")],
    repo: Annotated[str, typer.Option(help="The stack's GitOps remote.")],
    prometheus_url: Annotated[str, typer.Option(help="The stack's Prometheus.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")],
) -> None:
    """Serve the read-only status page of a local stack (`sluice local up` starts it, with
    the stack's MLflow in the root option --mlflow-tracking-uri)."""
    from controller.commands_local import run_status_page

    validate_environment_name(env)
    settings = current_settings(state_dir=state_dir, git_remote=repo, prometheus_url=prometheus_url)
    run_status_page(settings, env=env, host="127.0.0.1", port=port)


@local_app.command("env")
def local_env() -> None:
    """Print export lines for the running stack: eval "$(sluice local env)"."""
    from controller.commands_local import run_env

    run_env(current_settings(), console=Console())


@local_app.command("url")
def local_url(
    name: Annotated[
        str,
        typer.Argument(
            help="mlflow, prometheus, alertmanager, status-page, or an InferenceService."
        ),
    ],
) -> None:
    """Print the URL of a component, or of an InferenceService's router."""
    from controller.commands_local import run_url

    run_url(current_settings(), name, console=Console())


@local_app.command("merge")
def local_merge(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    env: Annotated[str, typer.Option("--env", help="Environment (manifests/overlays/ENV).")],
    forge: Annotated[
        str, forge_option("local: merge with git; github: through the pull request's merge.")
    ] = "local",
    repo: Annotated[
        str | None, typer.Option(help="Git remote (default: SLUICE_GIT_REMOTE, else origin).")
    ] = None,
) -> None:
    """Merge MODEL's open proposal in ENV as a pull request would; print the merge commit.

    A merge commit, the proposal branch kept; with --forge github, GitHub's merge endpoint."""
    from controller.commands_local import run_merge

    validate_model_name(model)
    validate_environment_name(env)
    run_merge(
        current_settings(),
        model=model,
        env=env,
        forge=forge_name(forge),
        remote=repo,
        console=Console(),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; :class:`SluiceError` becomes one line on stderr."""
    command = typer.main.get_command(app)
    plain_flags(command)  # `--dry-run`, not `--dry-run <bool>`
    try:
        # Standalone mode keeps click's own handling of usage errors (exit 2, usage shown).
        command.main(args=argv, prog_name="sluice", standalone_mode=True)
    except SluiceError as exc:
        if verbose_requested():
            traceback.print_exc()
        sys.stderr.write(f"sluice: error: {redact(exc.message)}\n")
        return int(exc.exit_code)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return int(ExitCode.OK)
        return code if isinstance(code, int) else int(ExitCode.BAD_INPUT)
    except KeyboardInterrupt:
        sys.stderr.write("sluice: interrupted\n")
        return 130
    except Exception as exc:  # the one place a bug becomes an exit code
        return _crash(exc)
    return int(ExitCode.OK)


def _crash_dir() -> Path:
    """The state directory if the settings load, else the system's temporary directory."""
    try:
        return current_settings().state_dir
    except Exception:  # the crash log must be written somewhere
        return Path(tempfile.gettempdir())


def _crash(exc: BaseException) -> int:
    """An unanticipated exception: the traceback goes to a crash log (and with ``--verbose``
    to stderr), one line names the exception and the log; exit 70, never 1 ("gate failed")."""
    text = "".join(traceback.format_exception(exc))
    if verbose_requested():
        sys.stderr.write(redact(text))
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    where = "not written"
    for directory in (_crash_dir(), Path(tempfile.gettempdir())):
        path = directory / f"crash-{stamp}-{os.getpid()}.log"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(f"sluice {__version__} {sys.argv!r}\n{redact(text)}", encoding="utf-8")
        except OSError:
            continue
        where = str(path)
        break
    what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    sys.stderr.write(
        f"sluice: internal error: {redact(what)} (a bug; traceback in {where}, "
        "--verbose shows it)\n"
    )
    return int(ExitCode.INTERNAL_ERROR)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
