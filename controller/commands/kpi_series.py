"""Composition of ``sluice serve``'s KPI series: which releases have KPI checks (Git), and the
prediction log of each one's environment their requests and outcomes are read from (see
:mod:`controller.serve.kpi_series`).
"""

from __future__ import annotations

from controller.commands.local_state import prediction_log_path, prediction_logs
from controller.ports import ReleaseRepository
from controller.proposals.proposal_scan import ReleaseSnapshot
from controller.rollout.observe import load_environment_config
from controller.serve.kpi_series import KpiRelease, KpiSeries
from controller.settings import Settings

__all__ = ["build_kpi_series"]


def build_kpi_series(
    settings: Settings, snapshot: ReleaseSnapshot, workspace: ReleaseRepository
) -> KpiSeries:
    """The KPI series over the configured prediction log, else each environment's local one
    (:func:`~controller.commands.local_state.prediction_log_path`). A SQLite log that does not
    exist yet (the local runtime creates it with its first router) is waited for, never
    created."""

    def logged(environment: str) -> bool:
        return (
            settings.prediction_store_url is not None
            or prediction_log_path(settings, environment).is_file()
        )

    def releases() -> list[KpiRelease]:
        # The watcher's last read: the series never fetch Git or ask the registry themselves.
        watched = [w for w in snapshot.last_watched() if logged(w.environment)]
        configs = {
            environment: load_environment_config(workspace, environment)
            for environment in dict.fromkeys(w.environment for w in watched)
        }
        found = []
        for w in watched:
            checks = configs[w.environment].policy_for(w.model).gates.kpis
            found.append(KpiRelease(w.environment, w.model, checks))
        return found

    return KpiSeries(releases, prediction_logs(settings), window=settings.kpi_series_window_seconds)
