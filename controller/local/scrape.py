"""What the local Prometheus scrapes, kept in step with the routers and model servers that run.

On a cluster Prometheus finds queue-proxies and predictor pods by Kubernetes service
discovery, and each pod's series carry the revision's labels. Locally the targets come and go
with the runtime's processes (a router per InferenceService, a model server per revision, on
ports chosen at start), so the runtime tells Prometheus itself: :class:`ScrapeTargets` is the
set that runs now, and :class:`PrometheusScrapeConfig` rewrites the config file and asks
Prometheus to reload it only when that set changes (a router or server started, stopped or
restarted on a new port), never on a pass that changed nothing.

Two jobs: ``sluice-routers`` (Knative queue-proxy's request metrics) and
``kserve-model-servers`` (kserve's own ``/metrics`` on each server's REST port), one group
per server labelled ``revision_name``, ``configuration_name`` and ``namespace_name`` as the
routers label their series, so a query can join the two per revision. Prometheus applies new
targets on its 5 s discovery tick, so a new target's first sample comes about 6 s after it
appears here.

Every rewrite keeps the rule files it was given (the cluster's alert rules, written by
:mod:`controller.local.rules`): a config rewritten for a new target must not drop the alerts.

A stack serving several environments runs a runtime per environment and one Prometheus, whose
config file each runtime rewrites: each writes the union of its own targets and those its
peers last saved in their ``runtime.json`` (:func:`peer_targets`), every pass, so a rewrite by
one never drops another's targets for longer than a pass.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from controller.errors import MetricsUnavailable, SluiceError
from controller.local.configs import StaticConfig, write_prometheus_config
from controller.local.state import read_json

__all__ = [
    "MODEL_SERVER_JOB",
    "ROUTER_JOB",
    "ModelServerTarget",
    "PrometheusScrapeConfig",
    "ScrapeTargets",
    "peer_targets",
    "reload_prometheus",
    "write_scrape_config",
]

ROUTER_JOB = "sluice-routers"
MODEL_SERVER_JOB = "kserve-model-servers"
_log = logging.getLogger("sluice.local.scrape")


@dataclass(frozen=True, order=True)
class ModelServerTarget:
    """A revision's model server: where it listens and the labels of its series."""

    revision: str
    isvc: str
    namespace: str
    port: int

    @property
    def labels(self) -> dict[str, str]:
        """The labels a queue-proxy puts on the revision's series."""
        return {
            "revision_name": self.revision,
            "configuration_name": f"{self.isvc}-predictor",
            "namespace_name": self.namespace,
        }


@dataclass(frozen=True)
class ScrapeTargets:
    """Router ports and model servers, in a canonical order so equal sets compare equal."""

    routers: tuple[int, ...] = ()
    model_servers: tuple[ModelServerTarget, ...] = ()

    @classmethod
    def of(
        cls, routers: Iterable[int], model_servers: Iterable[ModelServerTarget]
    ) -> ScrapeTargets:
        """The set, whatever order the ports and servers come in."""
        return cls(tuple(sorted(set(routers))), tuple(sorted(set(model_servers))))

    def to_dict(self) -> dict[str, Any]:
        """The set as the runtime's state file stores it."""
        servers = [asdict(server) for server in self.model_servers]
        return {"routers": list(self.routers), "modelServers": servers}

    def union(self, other: ScrapeTargets) -> ScrapeTargets:
        """Both sets' routers and model servers."""
        return ScrapeTargets.of(
            (*self.routers, *other.routers), (*self.model_servers, *other.model_servers)
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ScrapeTargets:
        """Read the set back from the state file (empty when it has none)."""
        data = data or {}
        servers = (
            ModelServerTarget(
                str(e["revision"]), str(e["isvc"]), str(e["namespace"]), int(e["port"])
            )
            for e in data.get("modelServers") or []
        )
        return cls.of((int(port) for port in data.get("routers") or []), servers)


def peer_targets(state_dirs: Iterable[Path]) -> ScrapeTargets:
    """The targets the runtimes of ``state_dirs`` last saved (``scrapeTargets`` of each one's
    ``runtime.json``; none for a runtime that saved nothing yet)."""
    targets = ScrapeTargets()
    for state_dir in state_dirs:
        saved = read_json(state_dir / "runtime.json") or {}
        targets = targets.union(ScrapeTargets.from_dict(saved.get("scrapeTargets")))
    return targets


def write_scrape_config(
    path: Path,
    targets: ScrapeTargets,
    alertmanager_url: str | None,
    *,
    rule_files: Sequence[Path],
) -> None:
    """Prometheus scrapes every router and every model server once a second, with the rules."""
    jobs: dict[str, list[str | StaticConfig]] = {
        ROUTER_JOB: [f"127.0.0.1:{port}" for port in targets.routers],
        MODEL_SERVER_JOB: [
            StaticConfig((f"127.0.0.1:{server.port}",), server.labels)
            for server in targets.model_servers
        ],
    }
    write_prometheus_config(
        path,
        scrape_targets={job: group for job, group in jobs.items() if group},
        alertmanager_url=alertmanager_url,
        rule_files=list(rule_files),
    )


def reload_prometheus(url: str) -> None:
    """``POST /-/reload``; Prometheus applies new targets on its next 5 s tick."""
    request = urllib.request.Request(f"{url}/-/reload", method="POST")  # noqa: S310 (local URL)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10):
            return
    except OSError as exc:
        raise MetricsUnavailable(f"POST {url}/-/reload failed ({exc}); check Prometheus") from None


class PrometheusScrapeConfig:
    """The config file Prometheus reads, rewritten (and reloaded) when the targets change.

    Without a ``path`` it only remembers the targets, for a runtime that runs without
    Prometheus; without a ``prometheus_url`` it writes the file but reloads nothing. Every
    file it writes names ``rule_files``.
    """

    def __init__(
        self,
        path: Path | None,
        prometheus_url: str | None,
        alertmanager_url: str | None,
        *,
        rule_files: Sequence[Path] = (),
    ) -> None:
        self.path = path
        self.prometheus_url = prometheus_url
        self.alertmanager_url = alertmanager_url
        self.rule_files = tuple(rule_files)
        self.targets: ScrapeTargets | None = None  # what the file says; None before the first

    def update(self, targets: ScrapeTargets) -> bool:
        """Rewrite and reload when ``targets`` differ from the last ones; True if they did."""
        if targets == self.targets:
            return False
        self.targets = targets
        if self.path is None:
            return True
        write_scrape_config(self.path, targets, self.alertmanager_url, rule_files=self.rule_files)
        _log.info(
            "scraping %d router(s) and %d model server(s)",
            len(targets.routers),
            len(targets.model_servers),
        )
        if self.prometheus_url:
            try:
                reload_prometheus(self.prometheus_url)
            except SluiceError as exc:  # a Prometheus that restarts reads the file anyway
                _log.warning("%s", exc.message)
        return True
