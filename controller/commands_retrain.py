"""The alert → retrain path of ``sluice serve``, composed from its parts.

Kept apart from :mod:`controller.commands_serve` so the path can be built, and tested, without
a Git remote or a watch loop: given the settings, the forge and the registry, it names the
concrete starter (the GitHub dispatch with a forge, the training module as a local process
without one) and returns the ``POST /hooks/alertmanager`` handler, or None when no token is
set (the route is then not served). The retrainer announces through the configured notifier
(the Slack-compatible webhook, else the log) and, for a local retraining, records its outcome
and the new challenger when the training process ends.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from controller.alertmanager_hook import alertmanager_hook_route, retrain_observer
from controller.backends.local_retrain import ExitHandler, LocalRetrain
from controller.errors import SluiceError
from controller.ports import Forge, ModelRegistry, ModelTagStore, Notifier, RetrainStarter
from controller.redact import register_secret
from controller.retrain import ForgeRetrain, RegistryCooldown, Retrainer, RetrainRequest
from controller.server import Handler, ServeMetrics
from controller.settings import Settings

__all__ = ["CHALLENGER_ALIAS", "build_alertmanager_hook", "build_notifier", "build_retrain_starter"]

#: The alias a training module sets on a version that passed its quality gate.
CHALLENGER_ALIAS = "challenger"


def build_retrain_starter(
    settings: Settings,
    forge: Forge | None,
    *,
    cwd: Path | None = None,
    on_exit: ExitHandler | None = None,
) -> RetrainStarter:
    """The GitHub ``retrain`` dispatch with a forge; the local training command without one."""
    if forge is not None:
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
    forge: Forge | None,
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
