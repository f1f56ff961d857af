"""The drift alert's path as the end-to-end drift tests build it: a monitored model server sent
shifted traffic, Prometheus with the drift rules, and `sluice serve` with the Alertmanager hook.

``tests/test_drift_alert_e2e.py`` (the hook dispatches to GitHub) and
``tests/test_drift_retrain_loop.py`` (the hook retrains locally) differ in the hook and in what
they assert; the path from traffic to alert is this one.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from controller.backends.mlflow_registry import MlflowRegistry
from controller.drift import DatasetDrift, detect_drift_from_profile
from controller.local.configs import StaticConfig
from controller.local.rules import write_local_rules
from controller.local.scrape import MODEL_SERVER_JOB, ModelServerTarget
from controller.local.services import AlertmanagerService, MlflowService, PrometheusService
from controller.local.serving.launcher import start_model_server
from controller.serve.http_transport import Handler
from controller.serve.server import ServeMetrics, SluiceServer, sluice_routes
from support.gitops_repo import ROOT

__all__ = ["RULES", "DriftAlertPath", "count", "drift_of_version_1"]

RULES = ROOT / "manifests" / "monitoring" / "prometheus-rules.yaml"


def drift_of_version_1(registry: MlflowRegistry, name: str, traffic: pd.DataFrame) -> DatasetDrift:
    """What the drift detector finds in ``traffic`` against version 1's reference profile."""
    run_id = registry.get_version(name, 1).run_id
    assert run_id is not None
    profile = registry.reference_profile(run_id)
    assert profile is not None
    return detect_drift_from_profile(profile, traffic)


@dataclass(frozen=True)
class DriftAlertPath:
    """The services a drift alert passes through, as the tests' fixtures start them."""

    mlflow: MlflowService
    prometheus_server: Callable[..., PrometheusService]
    alertmanager_server: Callable[..., AlertmanagerService]
    work: Path

    @contextmanager
    def shifted_traffic(
        self,
        name: str,
        uri: str,
        traffic: pd.DataFrame,
        *,
        metrics: ServeMetrics,
        hook: Handler | None,
        token: str,
        **alertmanager_timings: str,
    ) -> Iterator[None]:
        """`sluice serve` with the Alertmanager ``hook`` (and no MLflow webhook), and the
        model server of ``name``'s version at ``uri`` sent ``traffic``: its drift gauges,
        updated every 0.5 s, are scraped by Prometheus with the drift rules as
        `sluice local up` writes them (``for:`` cut to 1 s), whose alerts Alertmanager posts to
        the hook with ``token``. The servers stop on leaving."""
        routes = sluice_routes(
            metrics=metrics,
            status=dict,
            mlflow_trigger=lambda model, alias: False,
            mlflow_webhook_secret=None,
            alertmanager_hook=hook,
        )
        with (
            SluiceServer(routes) as serve,
            start_model_server(
                name=name,
                storage_uri=uri,
                log_dir=self.work / "model-server",
                env={"MLFLOW_TRACKING_URI": self.mlflow.tracking_uri},
                extra_args=["--drift-interval-seconds", "0.5"],
            ) as model_server,
        ):
            alertmanager = self.alertmanager_server(
                webhook_url=f"{serve.url}/hooks/alertmanager",
                bearer_token=token,
                **alertmanager_timings,
            )
            # The labels the local runtime gives revision 1's model server in models-staging.
            revision = ModelServerTarget(
                f"{name}-predictor-00001", name, "models-staging", model_server.port
            )
            target = StaticConfig((f"127.0.0.1:{model_server.port}",), revision.labels)
            self.prometheus_server(
                scrape_targets={MODEL_SERVER_JOB: [target]},
                alertmanager_url=alertmanager.url,
                rule_files=[write_local_rules(self.work / "rules.yml", RULES, alert_for="1s")],
            )
            _send(f"{model_server.url}/v1/models/{name}:predict", traffic)
            yield


def _send(url: str, traffic: pd.DataFrame) -> None:
    """``traffic``'s rows to a predict endpoint, 100 a request."""
    rows = json.loads(traffic.to_json(orient="values"))
    for start in range(0, len(rows), 100):
        body = json.dumps({"instances": rows[start : start + 100]}).encode()
        request = urllib.request.Request(  # noqa: S310 (our own http:// URL)
            url, body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            assert response.status == 200


def count(metrics: ServeMetrics, name: str, **labels: str) -> float:
    """A sample of `sluice serve`'s metrics, 0 when it has none."""
    return metrics.registry.get_sample_value(name, labels) or 0.0
