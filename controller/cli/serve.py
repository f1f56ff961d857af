"""``sluice serve``: watch the releases in Git, propose when an alias moves, and (``--rollouts``)
walk merged versions through their canaries. The work happens in :mod:`controller.commands.serve`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from controller.cli.options import current_settings, forge_name, forge_option
from controller.text.ref_names import validate_environment_name

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
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
        ctx, serve_host=host, serve_port=port, poll_interval_seconds=poll_interval
    )
    target = _rollout_target(rollouts)
    # Imported once the input is checked: bad input is refused in a fraction of a second.
    from controller.commands.propose import build_forge, default_remote
    from controller.commands.serve import run_serve

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
