"""Settings as a command run beside a local stack sees them, and where each value came from.

:func:`controller.settings.load_settings` reads flags, the environment, the config file and the
defaults. A command run in a checkout where ``sluice local up`` runs also finds that stack
without any export: its MLflow (while it runs) and the GitOps remote it syncs from (recorded by
``up``) take the place of the defaults, and only of the defaults. ``sluice config show`` prints
every value with its source.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices

from controller.local.stack import REMOTE_FILE, STACK_FILE, recorded_remote, running_urls
from controller.settings import DEFAULT_CONFIG_FILE, Settings
from controller.yaml_config import load_yaml_file

__all__ = ["LOCAL_STACK", "apply_local_stack", "local_stack_values", "setting_sources"]

#: The source of a value taken from the running local stack.
LOCAL_STACK = "local stack"


def local_stack_values(settings: Settings) -> dict[str, str]:
    """What the local stack under ``settings.state_dir`` offers: ``mlflow_tracking_uri`` while
    its MLflow runs, ``git_remote`` once ``up`` recorded one."""
    root = (settings.state_dir / "local").resolve()
    if not (root / STACK_FILE).is_file() and not (root / REMOTE_FILE).is_file():
        return {}
    values = {}
    if mlflow := running_urls(root).get("mlflow"):
        values["mlflow_tracking_uri"] = mlflow
    if remote := recorded_remote(root):
        values["git_remote"] = remote
    return values


def apply_local_stack(settings: Settings) -> Settings:
    """``settings`` with the local stack's values where nothing else gave one."""
    update = {
        name: value
        for name, value in local_stack_values(settings).items()
        if name not in settings.model_fields_set
    }
    return settings.model_copy(update=update) if update else settings


def _environment_names(name: str) -> list[str]:
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice).upper() for choice in alias.choices if str(choice) != name]
    return [f"SLUICE_{name.upper()}"]


def _config_path(config: Path | None) -> Path | None:
    explicit = config or (
        Path(os.environ["SLUICE_CONFIG"]) if os.environ.get("SLUICE_CONFIG") else None
    )
    path = explicit or DEFAULT_CONFIG_FILE
    return path if explicit or path.exists() else None


def setting_sources(
    settings: Settings, *, config: Path | None, flags: dict[str, Any]
) -> dict[str, str]:
    """Where each setting's value came from: ``flag``, ``env NAME``, ``config file PATH``,
    ``local stack`` or ``default`` (the order in which they win)."""
    path = _config_path(config)
    from_file: dict[str, Any] = {}
    if path is not None:
        data = load_yaml_file(path, label=f"config file {path}", fix="fix it", kind="settings file")
        from_file = data if isinstance(data, dict) else {}
    environ = {key.upper() for key in os.environ}
    stack = local_stack_values(settings)
    sources = {}
    for name in Settings.model_fields:
        env_names = [n for n in _environment_names(name) if n in environ]
        if flags.get(name) is not None:
            sources[name] = "flag"
        elif env_names:
            sources[name] = f"env {env_names[0]}"
        elif name in from_file:
            sources[name] = f"config file {path}"
        elif name in stack and getattr(settings, name) == stack[name]:
            sources[name] = LOCAL_STACK
        else:
            sources[name] = "default"
    return sources
