"""The ``sluice`` command's root options, as its callback saw them, and the settings they load;
the options every verb shares (``--forge``) and how help shows them.

:func:`controller.cli.entry_point.main` gives each invocation a :class:`RootOptions` as the click
context's object; the root callback (:mod:`controller.cli.app`) fills it from ``--verbose``,
``--config`` and ``--mlflow-tracking-uri``, every verb reads it through its context
(:func:`current_settings`), and ``main`` reads it again to report an error. Nothing is kept in
the module between invocations, and no verb imports the app that includes it.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Any, Literal

import typer

from controller.errors import InputError
from controller.settings import Settings, load_settings

__all__ = [
    "FORGES",
    "TARGET_OPTION_HELP",
    "ForgeName",
    "RootOptions",
    "TargetChoice",
    "current_settings",
    "current_sources",
    "forge_name",
    "forge_option",
    "metavar_for",
    "plain_flags",
    "root_options",
]

ForgeName = Literal["local", "github"]
#: Where proposals go and rollouts report: every command with ``--forge`` offers these.
FORGES: tuple[ForgeName, ...] = ("local", "github")


class TargetChoice(StrEnum):
    """Where the InferenceServices (and graphs) run: every command with ``--target``."""

    local = "local"
    kubernetes = "kubernetes"


TARGET_OPTION_HELP = "local: the `sluice local up` stack; kubernetes: a cluster with Argo CD."


@dataclass
class RootOptions:
    """The root options of one invocation. Filled by the root callback once it has parsed them,
    so until then (``sluice --help``, a usage error) they are the defaults."""

    verbose: bool = False
    config: Path | None = None
    mlflow_tracking_uri: str | None = None

    def _flags(self) -> dict[str, object]:
        return {"mlflow_tracking_uri": self.mlflow_tracking_uri}

    def settings(self, **flags: object) -> Settings:
        """Settings from flags (the root's and a command's ``flags``), ``--config`` (if
        given), the environment, the running local stack of this checkout and the defaults,
        validated together (the local stack only fills what nothing else gave)."""
        from controller.local.effective_settings import apply_local_stack

        return apply_local_stack(load_settings(self.config, **self._flags(), **flags))

    def sources(self, settings: Settings) -> dict[str, str]:
        """Where each of ``settings`` came from (flag, env, config file, local stack,
        default)."""
        from controller.local.effective_settings import setting_sources

        return setting_sources(settings, config=self.config, flags=self._flags())


def root_options(ctx: typer.Context) -> RootOptions:
    """The root options of ``ctx``'s invocation (the defaults if none were recorded)."""
    options = ctx.find_object(RootOptions)
    return options if options is not None else RootOptions()


def current_settings(ctx: typer.Context, **flags: object) -> Settings:
    """:meth:`RootOptions.settings` of ``ctx``'s invocation, with a command's ``flags``."""
    return root_options(ctx).settings(**flags)


def current_sources(ctx: typer.Context, settings: Settings) -> dict[str, str]:
    """:meth:`RootOptions.sources` of ``ctx``'s invocation."""
    return root_options(ctx).sources(settings)


def forge_name(value: str) -> ForgeName:
    """``--forge``'s value, checked the same way on every command: anything else is one line
    on stderr and exit 2 (an :class:`InputError`), not a usage box."""
    for name in FORGES:
        if value == name:
            return name
    choices = ", ".join(repr(name) for name in FORGES)
    raise InputError(f"--forge: {value!r} is not one of {choices}")


def forge_option(help_text: str) -> Any:
    """``--forge [local|github]`` (default local) with a command's own ``help_text``: the
    choices, metavar and check of :func:`forge_name` on every command that has it."""
    return typer.Option(
        "--forge",
        metavar=f"[{'|'.join(FORGES)}]",
        callback=forge_name,
        show_default=True,
        help=help_text,
    )


def metavar_for(param: Any) -> str:
    """What help shows for ``param``'s value: nothing for a flag, ``FILE``/``DIR`` for a path,
    else the parameter's name in capitals (``--port-base PORT-BASE``, ``MODEL``)."""
    if getattr(param, "is_flag", False) and not getattr(param, "count", False):
        return ""
    name = str(param.name or "value")
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    kinds = typing.get_args(annotation) or (annotation,)
    if any(isinstance(kind, type) and issubclass(kind, PurePath) for kind in kinds):
        return "DIR" if name.endswith("dir") else "FILE"
    return name.upper().replace("_", "-")


def _no_type(ctx: Any) -> None:
    return None


def plain_flags(command: Any) -> None:
    """Show real metavars in every help text of ``command`` and its subcommands.

    Typer's rich help prints a Python type beside every parameter without a metavar:
    ``<bool>`` beside ``--dry-run``, ``--wait/--no-wait`` and ``--help``, ``<str>`` beside
    ``--env``. A flag takes no value, so it gets none (an empty metavar); a value gets a name
    (:func:`metavar_for`) unless the command gave it one."""
    for param in [*command.params, command.get_help_option(typer.Context(command))]:
        if getattr(param, "param_type_name", "") == "argument":
            # Its name is its metavar (MODEL, FILE): no Python type in the column beside it.
            param.display_type_rich = _no_type
            if param.metavar is None:
                param.metavar = str(param.name).upper()
        elif param is not None and param.metavar is None:
            param.metavar = metavar_for(param)
    for sub in (getattr(command, "commands", None) or {}).values():
        plain_flags(sub)
