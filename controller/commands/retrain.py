"""The alert → retrain path of ``sluice serve``, composed from its parts.

Kept apart from :mod:`controller.commands.serve` so the path can be built, and tested, without
a Git remote or a watch loop: given the settings, the forge and the registry, it names the
concrete starter (the GitHub dispatch with a forge, the training module as a local process
without one) and returns the ``POST /hooks/alertmanager`` handler, or None when no token is
set (the route is then not served). The retrainer announces through the configured notifier
(the Slack-compatible webhook, else the log) and, for a local retraining, records its outcome
and the new challenger when the training process ends.

``sluice retrain report`` (:func:`run_report`) is the other end of a retraining started
through the forge: the train workflow runs it last, on success and on failure, and it records
the outcome and sends the notice as the local path does when its process ends.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console

from controller.backends.local_retrain import ExitHandler, LocalRetrain
from controller.domain import RetrainRequest
from controller.errors import InputError, SluiceError
from controller.ports import Forge, ModelRegistry, ModelTagStore, Notifier, RetrainStarter
from controller.redact import redact, register_secret
from controller.retrain.forge_dispatch import ForgeRetrain
from controller.retrain.record import (
    FINISHED_OUTCOMES,
    Outcome,
    RetrainRecord,
    describe_retraining,
    exit_outcome,
)
from controller.retrain.registry_state import RegistryCooldown
from controller.retrain.report import RetrainReport, report_outcome
from controller.retrain.retrainer import Retrainer
from controller.serve.alertmanager_hook import alertmanager_hook_route, retrain_observer
from controller.serve.server import Handler, ServeMetrics
from controller.settings import Settings

__all__ = [
    "CHALLENGER_ALIAS",
    "build_alertmanager_hook",
    "build_notifier",
    "build_retrain_starter",
    "run_report",
]

#: The alias a training module sets on a version that passed its quality gate.
CHALLENGER_ALIAS = "challenger"


def build_retrain_starter(
    settings: Settings,
    forge: Forge,
    *,
    cwd: Path | None = None,
    on_exit: ExitHandler | None = None,
) -> RetrainStarter:
    """The GitHub ``retrain`` dispatch with a forge that opens pull requests (the train
    workflow proposes what it trains); the local training command otherwise."""
    if forge.opens_pull_requests:
        return ForgeRetrain(forge)
    return LocalRetrain(
        settings.retrain_command,
        log_dir=settings.state_dir / "retrain",
        cwd=cwd,
        env={"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri},
        on_exit=on_exit,
    )


def build_notifier(settings: Settings) -> Notifier:
    """The Slack-compatible webhook when one is configured, else the log."""
    if settings.notify_webhook_url is None:
        from controller.notify import LogNotifier

        return LogNotifier()
    from controller.backends.slack_notifier import SlackWebhookNotifier

    return SlackWebhookNotifier(settings.notify_webhook_url.get_secret_value())


def _challenger(models: ModelRegistry, alias: str) -> Callable[[str], int | None]:
    def version(model: str) -> int | None:
        try:
            return models.resolve(model, alias=alias).version
        except SluiceError:
            return None

    return version


def build_alertmanager_hook(
    settings: Settings,
    *,
    forge: Forge,
    registry: ModelTagStore,
    metrics: ServeMetrics,
    models: ModelRegistry | None = None,
    notifier: Notifier | None = None,
    cwd: Path | None = None,
) -> Handler | None:
    """``POST /hooks/alertmanager`` as the settings describe it; None without a token.

    ``models`` (the registry, when it can resolve aliases) names the ``challenger`` a
    successful local retraining registered."""
    if settings.alertmanager_token is None:
        return None
    token = settings.alertmanager_token.get_secret_value()
    register_secret(token)
    built: list[Retrainer] = []  # the starter's exit handler reports to the retrainer below

    def on_exit(request: RetrainRequest, code: int, log_path: Path) -> None:
        built[0].finished(request, code, f"log {log_path}")

    retrainer = Retrainer(
        build_retrain_starter(settings, forge, cwd=cwd, on_exit=on_exit),
        RegistryCooldown(registry),
        cooldown_seconds=settings.retrain_cooldown_seconds,
        group_seconds=settings.retrain_group_seconds,
        notifier=notifier or build_notifier(settings),
        observer=retrain_observer(metrics),
        challenger=_challenger(models, CHALLENGER_ALIAS) if models is not None else None,
    )
    built.append(retrainer)
    return alertmanager_hook_route(
        token=token, retrainer=retrainer, metrics=metrics, alertnames=settings.retrain_alerts
    )


_DETAILS: dict[str, str] = {
    "succeeded": "trained and registered as challenger",
    "gate-failed": "the new version failed the quality gate",
    "failed": "the retraining failed",
}


def _outcome(outcome: str | None, exit_code: int | None) -> tuple[Outcome, str]:
    """The outcome given, or the one the training command's exit status means."""
    if (outcome is None) == (exit_code is None):
        raise InputError(
            "give the retraining's outcome (--outcome succeeded|gate-failed|failed) or the "
            "training command's exit status (--exit-code N), one of them"
        )
    if exit_code is not None:
        return exit_outcome(exit_code)
    for name in FINISHED_OUTCOMES:
        if outcome == name:
            return name, _DETAILS[name]
    raise InputError(
        f"--outcome {outcome!r} is not one of {', '.join(FINISHED_OUTCOMES)}; give one of them, "
        "or the training command's exit status (--exit-code N)"
    )


def _report_notifier(settings: Settings) -> Notifier:
    """The configured notifier; without a webhook, the log, which a command prints on stderr
    (stdout keeps the result, JSON with --json)."""
    if settings.notify_webhook_url is not None:
        return build_notifier(settings)
    from controller.notify import LogNotifier

    logger = logging.getLogger("sluice.notify.report")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("notice: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return LogNotifier(logger)


def run_report(
    settings: Settings,
    *,
    model: str,
    env: str,
    outcome: str | None,
    exit_code: int | None,
    version: int | None,
    run_url: str | None,
    requested_at: str | None,
    detail: str | None,
    as_json: bool,
    console: Console,
    notifier: Notifier | None = None,
) -> RetrainRecord:
    """Record how a retraining started through the forge ended (``sluice retrain report``):
    the record of :meth:`Retrainer.finished`, with the run's URL as where it ran, and the
    same notice through the configured notifier. Running it again changes nothing."""
    from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http

    name, default_detail = _outcome(outcome, exit_code)
    where = (run_url or "").strip()
    if where and urlsplit(where).scheme not in ("http", "https"):
        raise InputError(
            f"--run-url {where!r} is not an http(s) URL; pass the workflow run's URL "
            "($GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID)"
        )
    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    registry = MlflowRegistry(settings.mlflow_tracking_uri)
    registry.registered_model_tags(model)  # an unknown model fails here, naming the registry
    text = detail or default_detail
    number = None
    if version is not None:
        registry.get_version(model, version)  # an unknown version fails here
    if name == "succeeded":
        if version is None:
            challenger = registry.version_by_alias(model, CHALLENGER_ALIAS)
            version = challenger.version if challenger is not None else None
        number = version
    elif version is not None:
        text = f"{text}; v{version} registered without the {CHALLENGER_ALIAS} alias"
    record, changed = report_outcome(
        RegistryCooldown(registry),
        notifier or _report_notifier(settings),
        RetrainReport(
            model=model, environment=env, outcome=name, detail=text, version=number,
            where=where, requested_at=requested_at or "",
        ),
        now=time.time(),
    )  # fmt: skip
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "model": model,
                    "environment": env,
                    "changed": changed,
                    "retraining": record.to_json(),
                }
            )
        )
    else:
        verb = "Recorded" if changed else "Already recorded (nothing changed)"
        line = describe_retraining(record, None, time.time())
        console.print(
            f"{verb}: {model} in {env}: last retraining {redact(line)}",
            highlight=False, soft_wrap=True, markup=False,
        )  # fmt: skip
    return record
