"""The local retrain command: its words rendered for a request, and the environment it gets.

Pure: :class:`~controller.backends.local_retrain.LocalRetrain` runs what these return.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from controller.domain import RetrainRequest
from controller.errors import ConfigError

__all__ = ["RETRAIN_ENVIRONMENT_VARIABLES", "render_command", "retrain_environment"]

#: What the retrain command finds in its environment (none of them is a setting's variable).
RETRAIN_ENVIRONMENT_VARIABLES = (
    "SLUICE_RETRAIN_MODEL",
    "SLUICE_RETRAIN_ENVIRONMENT",
    "SLUICE_RETRAIN_SINCE",
    "SLUICE_DRIFTED_FEATURES",
    "SLUICE_DRIFTED_VERSION",
    "SLUICE_RETRAIN_REASON",
)


def retrain_environment(request: RetrainRequest) -> dict[str, str]:
    """The environment variables a retrain command gets: what to retrain and why."""
    return dict(
        zip(
            RETRAIN_ENVIRONMENT_VARIABLES,
            (
                request.model,
                request.environment,
                request.since,
                ",".join(request.features),
                request.drifted_version,
                ",".join(request.alerts),
            ),
            strict=True,
        )
    )


class _StrictValues(dict[str, str]):
    def __missing__(self, key: str) -> str:
        known = ", ".join(f"{{{name}}}" for name in sorted(self))
        raise ConfigError(f"retrain command names {{{key}}}; it may use {known}")


def render_command(template: Sequence[str], request: RetrainRequest) -> list[str]:
    """The retrain command for ``request``: each word of ``template`` with its placeholders
    (``{python}``, ``{module}``, ``{model}``, ``{environment}``, ``{features}``, ``{since}``,
    ``{drifted_version}``) filled in; an unknown placeholder is a :class:`ConfigError`."""
    if not template:
        raise ConfigError("the retrain command is empty: set retrain_command")
    values: Mapping[str, str] = _StrictValues(
        python=sys.executable,
        module=f"models.{request.model.replace('-', '_')}.train",
        model=request.model,
        environment=request.environment,
        features=",".join(request.features),
        since=request.since,
        drifted_version=request.drifted_version,
    )
    try:
        return [word.format_map(values) for word in template]
    except (ValueError, IndexError) as exc:  # a lone brace, a positional {0}
        raise ConfigError(
            f"retrain command {list(template)} is not a valid template: {exc}"
        ) from None
