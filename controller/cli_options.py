"""The ``sluice`` command's root options, as its callback saw them, and the settings they load.

:mod:`controller.cli` records ``--verbose``, ``--config`` and ``--mlflow-tracking-uri`` here in
its root callback; the command tables it includes (:mod:`controller.cli_rollout`,
:mod:`controller.cli_quarantine`) load settings through :func:`current_settings`, so none of
them imports the app that includes it.
"""

from __future__ import annotations

from pathlib import Path

from controller.settings import Settings, load_settings

__all__ = ["current_settings", "current_sources", "set_root_options", "verbose_requested"]

_state: dict[str, object] = {"verbose": False, "config": None, "overrides": {}}


def set_root_options(
    *, verbose: bool, config: Path | None, mlflow_tracking_uri: str | None
) -> None:
    """Record the root options of this invocation (the root callback calls it once)."""
    _state["verbose"] = verbose
    _state["config"] = config
    _state["overrides"] = {"mlflow_tracking_uri": mlflow_tracking_uri}


def verbose_requested() -> bool:
    """Whether ``--verbose`` was given: errors then show their tracebacks."""
    return bool(_state["verbose"])


def current_settings(**flags: object) -> Settings:
    """Settings from flags (the root's and a command's ``flags``), ``--config`` (if given),
    the environment, the running local stack of this checkout and the defaults, validated
    together (the local stack only fills what nothing else gave)."""
    from controller.local.effective_settings import apply_local_stack

    config = _state["config"]
    overrides = _state["overrides"]
    return apply_local_stack(
        load_settings(
            config if isinstance(config, Path) else None,
            **(overrides if isinstance(overrides, dict) else {}),
            **flags,
        )
    )


def current_sources(settings: Settings) -> dict[str, str]:
    """Where each of ``settings`` came from (flag, env, config file, local stack, default)."""
    from controller.local.effective_settings import setting_sources

    config = _state["config"]
    overrides = _state["overrides"]
    return setting_sources(
        settings,
        config=config if isinstance(config, Path) else None,
        flags=dict(overrides) if isinstance(overrides, dict) else {},
    )
