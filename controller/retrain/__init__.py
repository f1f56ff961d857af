"""Retraining asked for by drift alerts: grouped per model and environment, one per cool-down.

Alertmanager sends the feature and the prediction alert of one model separately, seconds apart,
repeats a firing alert and retries a delivery it thinks failed; each of those must not start a
training run, and the retraining that does start must know every drifted feature.
:class:`~controller.retrain.retrainer.Retrainer` therefore works as Alertmanager's ``group_wait``
does: the first alert of a (model, environment) opens a group, alerts arriving in the next
``group_seconds`` join it (:func:`~controller.retrain.grouping.merge_requests`: the union of their
features, the earliest ``since``), and when the window closes one retraining starts. After it
started, the pair's alerts are turned away until ``cooldown_seconds`` have passed.

State lives where the rest of Sluice's state is, in the registry, as tags on the registered
model, so a restarted ``sluice serve`` honours and shows what its previous process did:

- ``sluice.retrain.ENV.requested_at``: when the last retraining started (the cool-down);
- ``sluice.retrain.ENV.last``: the last retraining, as JSON
  (:class:`~controller.retrain.record.RetrainRecord`): when, why (alerts, features, since), its
  outcome (``grouping``, ``started``, ``succeeded``, ``gate-failed``, ``failed``) and the new
  version;
- ``sluice.retrain.ENV.turned_away``: the last alert turned away by the cool-down, as JSON.

``sluice status`` shows them, and each start, turn-away and outcome is announced through the
:class:`~controller.ports.Notifier` (a turn-away once per cool-down).

What "start" means is a :class:`~controller.ports.RetrainStarter`:
:class:`~controller.retrain.forge_dispatch.ForgeRetrain` sends the GitHub ``repository_dispatch`` of
type ``retrain`` that the train workflow listens for;
:class:`~controller.backends.local_retrain.LocalRetrain` runs the training command with the request
in its environment (:func:`~controller.retrain.command.retrain_environment`) and reports its exit
status to :meth:`~controller.retrain.retrainer.Retrainer.finished`. The workflow reports its own
outcome back with ``sluice retrain report`` (:func:`~controller.retrain.report.report_outcome`): the
dispatch carries ``requested_at``, the ``at`` of the record it started, so the report finishes that
record and no other, and the record and the notice are those
:meth:`~controller.retrain.retrainer.Retrainer.finished` makes.

The package, module by module: ``record`` (pure) is the registry's record of a retraining, its tags
and how ``sluice status`` words it; ``grouping`` (pure) merges a pair's alerts and counts down the
cool-down; ``command`` (pure) renders the local retrain command and its environment;
``registry_state`` keeps the records as tags through :class:`~controller.ports.ModelTagStore`;
``retrainer`` is :class:`~controller.retrain.retrainer.Retrainer`, which groups, starts and turns
away; ``report`` finishes a record from the workflow's report and announces an outcome;
``forge_dispatch`` is the ``retrain`` dispatch of
:class:`~controller.retrain.forge_dispatch.ForgeRetrain`.

The package spans two layers (pyproject.toml's import-linter contracts place its modules one by
one), so this file imports nothing.
"""

__all__: list[str] = []
