"""The ``sluice`` command line: the composition root, the only place concrete backends are named.

``app`` is the Typer app (:mod:`controller.cli.app`: the root options and the list of verbs),
``main`` the console script (:mod:`controller.cli.entry_point`: errors become exit codes). Each
verb or group of verbs has a module (``propose``, ``serve``, ``rollout`` with ``rollback`` and
``status``, ``quarantine``, ``local``, ``init``, ``drift``, ``feedback``, ``retrain``,
``config``, ``demo``) that checks its input and leaves the work to its module in
:mod:`controller.commands`; ``options`` holds what they share: the root options, ``--forge``
and how help shows a value.
"""

from controller.cli.app import app
from controller.cli.entry_point import main

__all__ = ["app", "main"]
