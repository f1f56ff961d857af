"""The commands: one composition root per verb, the only modules that name concrete backends.

Each module wires the adapters (:mod:`controller.backends`) or the emulator
(:mod:`controller.local`) to the services and the core for one command, and is what its verb in
:mod:`controller.cli` hands the work to: ``propose``, ``rollout`` (with ``rollback`` and
``status``), ``serve``, ``status`` (the live table and the status page), ``init``, ``local``,
``drift``, ``feedback`` and ``retrain``.

Nothing outside the command line imports this package (pyproject.toml's import-linter
contracts), so this file imports nothing.
"""

__all__: list[str] = []
