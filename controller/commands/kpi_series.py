"""Composition of ``sluice serve``'s KPI series: which releases have KPI checks (Git), and the
prediction log their requests and outcomes are read from (see :mod:`controller.serve.kpi_series`).
"""

from __future__ import annotations

from controller.backends.prediction_stores import open_prediction_log
from controller.commands.local_state import prediction_log_path
from controller.ports import ReleaseRepository
from controller.proposals.proposal_scan import ReleaseSnapshot
from controller.rollout.observe import load_environment_config
from controller.serve.kpi_series import KpiRelease, KpiSeries
from controller.settings import Settings

__all__ = ["build_kpi_series"]


def build_kpi_series(
    settings: Settings, snapshot: ReleaseSnapshot, workspace: ReleaseRepository
) -> KpiSeries:
    """The KPI series over the configured prediction log. A SQLite log that does not exist
    yet (the local runtime creates it with its first router) is waited for, never created."""
    path = prediction_log_path(settings)
    log = open_prediction_log(settings, path)

    def releases() -> list[KpiRelease]:
        if settings.prediction_store_url is None and not path.is_file():
            return []
        # The watcher's last read: the series never fetch Git or ask the registry themselves.
        watched = snapshot.last_watched()
        configs = {
            environment: load_environment_config(workspace, environment)
            for environment in dict.fromkeys(w.environment for w in watched)
        }
        found = []
        for w in watched:
            checks = configs[w.environment].policy_for(w.model).gates.kpis
            found.append(KpiRelease(w.environment, w.model, checks))
        return found

    return KpiSeries(releases, log, window=settings.kpi_series_window_seconds)
