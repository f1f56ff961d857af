"""Real services on 127.0.0.1 for a local loop and for integration tests.

``sluice local up`` and the test fixtures start the same MLflow, PostgreSQL, Prometheus and
Alertmanager processes the same way (free port, ready check, clean stop), so what the tests
exercise is what a user runs. See :mod:`controller.local.processes` for the supervision and
:mod:`controller.local.services` (MLflow, Prometheus, Alertmanager),
:mod:`controller.local.postgres` and :mod:`controller.local.configs` for the concrete launchers
and their configuration files.
"""

__all__: list[str] = []
