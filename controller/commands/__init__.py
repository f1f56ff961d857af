"""The commands: one composition root per verb, the only modules that name concrete backends.

Each verb's module wires the adapters (:mod:`controller.backends`) or the emulator
(:mod:`controller.local`) to the services and the core, and is what its verb in
:mod:`controller.cli` hands the work to: ``propose``, ``rollout`` (with ``rollback`` and
``status``), ``serve``, ``init`` (a model; ``init_repo``: a new repository), ``local`` (its
``status`` and page in ``local_status``), ``drift``, ``feedback`` and ``retrain``. What
several of them share has a module of its own: ``status`` (the live table and the status
page) and ``status_rows`` (what they show), ``rollout_backends`` (every backend of a rollout
pass, from the settings) and ``local_state`` (where ``sluice local up`` keeps its state).

Nothing outside the command line imports this package, and inside it the verbs import only
what they share, never each other (pyproject.toml's import-linter contracts); this file
imports nothing.
"""

__all__: list[str] = []
