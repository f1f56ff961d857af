"""The alert → retrain path of ``sluice serve``, composed from its parts.

Kept apart from :mod:`controller.commands_serve` so the path can be built, and tested, without
a Git remote or a watch loop: given the settings, the forge and the registry, it names the
concrete starter (the GitHub dispatch with a forge, the training module as a local process
without one) and returns the ``POST /hooks/alertmanager`` handler, or None when no token is
set (the route is then not served).
"""

from __future__ import annotations

from pathlib import Path

from controller.alertmanager_hook import alertmanager_hook_route
from controller.backends.local_retrain import LocalRetrain
from controller.ports import Forge, ModelTagStore, RetrainStarter
from controller.redact import register_secret
from controller.retrain import ForgeRetrain, RegistryCooldown, Retrainer
from controller.server import Handler, ServeMetrics
from controller.settings import Settings

__all__ = ["build_alertmanager_hook", "build_retrain_starter"]


def build_retrain_starter(
    settings: Settings, forge: Forge | None, *, cwd: Path | None = None
) -> RetrainStarter:
    """The GitHub ``retrain`` dispatch with a forge; the local training command without one."""
    if forge is not None:
        return ForgeRetrain(forge)
    return LocalRetrain(
        settings.retrain_command,
        log_dir=settings.state_dir / "retrain",
        cwd=cwd,
        env={"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri},
    )


def build_alertmanager_hook(
    settings: Settings,
    *,
    forge: Forge | None,
    registry: ModelTagStore,
    metrics: ServeMetrics,
) -> Handler | None:
    """``POST /hooks/alertmanager`` as the settings describe it; None without a token."""
    if settings.alertmanager_token is None:
        return None
    token = settings.alertmanager_token.get_secret_value()
    register_secret(token)
    retrainer = Retrainer(
        build_retrain_starter(settings, forge),
        RegistryCooldown(registry),
        cooldown_seconds=settings.retrain_cooldown_seconds,
    )
    return alertmanager_hook_route(
        token=token, retrainer=retrainer, metrics=metrics, alertnames=settings.retrain_alerts
    )
