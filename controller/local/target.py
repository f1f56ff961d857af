"""The local target as Sluice's deployment target: what its runtime last wrote to ``runtime.json``.

The local runtime (:mod:`controller.local.runtime`) plays Argo CD, KServe and Knative for one
environment and saves, on every pass, an Argo CD-shaped Application and each
InferenceService as the Kubernetes API would return it. Reading that file, and mapping it with
the cluster target's :func:`~controller.backends.kubernetes_target.observation_from`, gives the
rollout the same observation on a laptop as on a cluster, with two differences: the local
router answers a tag at ``<router>/_tag/<tag>`` instead of Knative's tag hosts, and it mirrors
a shadow phase's requests by itself (``mirrors_shadow``), so no VirtualService goes into Git.

Between analyses the sequential watch reads each revision's requests from the router itself
(:meth:`LocalTarget.request_counts`, the router's ``/_sluice/requests``), as they are counted,
where a cluster's watch reads Prometheus.

An InferenceGraph's router of the local target also answers what the graph would have
answered had one member answered as given (:meth:`LocalTarget.graph_replay`, a
:class:`~controller.ports.GraphReplay`); a cluster's KServe router cannot.

A stack serving several environments (``sluice local up --env staging --env production``)
runs a runtime per environment: the first one's state is in the state directory, each further
one's in :func:`~controller.local.state.environment_dir`, where this target reads it, so one
controller rolls out in staging and production alike.

A file whose runtime has exited would show a frozen past as the present, so the runtime's pid
must still run *our* runtime (its command line carries the module and this state directory,
as :mod:`controller.local.state` checks before trusting any pid).
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

from controller.backends.argocd_health import HealthStatus
from controller.backends.kubernetes_target import observation_from
from controller.errors import ConfigError, RemoteUnavailable
from controller.local.graph_replay import LocalGraphReplay
from controller.local.state import environment_dir, pid_matches, read_json
from controller.target_types import TargetObservation

__all__ = ["NOT_RUNNING", "RUNTIME_FILE", "LocalTarget"]

#: The error message when no runtime answers for the state directory.
NOT_RUNNING = "the local target is not running; start it with `sluice local up`"
#: The runtime's state file, as :data:`controller.local.runtime.RUNTIME_FILE` names it; not
#: imported from there, because importing the runtime imports the model servers (pandas...).
RUNTIME_FILE = "runtime.json"
# The markers `sluice local up` starts the runtime with (controller.local.stack).
_RUNTIME_MODULE = "controller.local.runtime"
# The key of a graph's router port among the runtime's ports (controller.local.graph_plane's
# GRAPH_PORT_PREFIX; its module is not imported for one string).
_GRAPH_PORT_PREFIX = "InferenceGraph/"
# Seconds the watch waits for a router's counts: a look that takes longer is skipped.
_COUNTS_TIMEOUT = 2.0


class LocalTarget:
    """The :class:`~controller.ports.Target` for ``sluice local up``'s runtime in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.state_file = self.state_dir / RUNTIME_FILE

    def __repr__(self) -> str:
        return f"LocalTarget(state_dir={str(self.state_dir)!r})"

    def observe(self, environment: str, inference_service: str) -> TargetObservation:
        """The InferenceService and the environment's sync as the runtime last saved them.

        :class:`~controller.errors.RemoteUnavailable` when no runtime is running for this
        state directory; :class:`~controller.errors.ConfigError` when it runs another
        environment.
        """
        saved = self._saved(environment)
        entry = (saved.get("inferenceServices") or {}).get(inference_service)
        if not entry or not isinstance(entry.get("object"), dict):
            return TargetObservation(exists=False, mirrors_shadow=True)
        saved_health = entry.get("health") or {}
        health = (
            HealthStatus(str(saved_health["status"]), str(saved_health.get("message") or ""))
            if saved_health.get("status")
            else None  # not reconciled yet: Argo CD's check runs on the object instead
        )
        observed = replace(
            observation_from(entry["object"], saved.get("application"), health=health),
            mirrors_shadow=True,
        )
        router = entry.get("url")
        if not router:
            return observed
        traffic = tuple(
            replace(t, url=f"{router}/_tag/{t.tag}") if t.tag else t for t in observed.traffic
        )
        return replace(observed, url=observed.url or router, traffic=traffic)

    def inference_graphs(self, environment: str) -> list[dict[str, Any]]:
        """The InferenceGraphs the runtime last saved, as the Kubernetes API would return them
        (:class:`~controller.ports.GraphInventory`); none for an environment it does not run.

        :class:`~controller.errors.RemoteUnavailable` when no runtime is running for this
        state directory.
        """
        try:
            saved = self._saved(environment)
        except ConfigError:
            return []  # it runs another environment: none of this one's graphs
        entries = (saved.get("inferenceGraphs") or {}).values()
        objects = [e["object"] for e in entries if isinstance(e, dict)]
        return [o for o in objects if isinstance(o, dict)]

    def served_storage(self, environment: str, inference_service: str) -> dict[str, str]:
        """The storageUri each revision of the InferenceService loaded, by revision name, as
        the runtime recorded it when it created the revision
        (:class:`~controller.ports.ServedStorage`).

        :class:`~controller.errors.RemoteUnavailable` when no runtime is running for this
        state directory.
        """
        entry = (self._saved(environment).get("inferenceServices") or {}).get(inference_service)
        return {
            str(record["name"]): str(record["storage_uri"])
            for record in (entry or {}).get("revisions") or ()
            if isinstance(record, dict) and record.get("name") and record.get("storage_uri")
        }

    def request_sync(self, environment: str) -> None:
        """Make the runtime fetch the branch now (``SIGUSR1``) rather than at its next poll;
        :class:`~controller.errors.RemoteUnavailable` when it is not running."""
        saved = self._saved(environment)
        pid = saved["pid"]
        if saved.get("refreshSignal") != "SIGUSR1":
            return  # a runtime from before the signal existed: its poll syncs the commit
        try:
            os.kill(pid, signal.SIGUSR1)
        except OSError as exc:
            raise RemoteUnavailable(f"{NOT_RUNNING} (pid {pid}: {exc.strerror})") from exc

    def request_counts(
        self, environment: str, inference_service: str, since: float
    ) -> dict[str, dict[int, int]]:
        """Answers per revision and response code since ``since`` (epoch seconds), as the
        InferenceService's router counted them: live, with no scrape in between.

        :class:`~controller.errors.RemoteUnavailable` when the runtime or its router does not
        answer (the watch then skips a look).
        """
        entry = (self._saved(environment).get("inferenceServices") or {}).get(inference_service)
        router = (entry or {}).get("url")
        if not router:
            raise RemoteUnavailable(f"{inference_service} has no router on the local target yet")
        url = f"{router}/_sluice/requests"
        try:
            answer = requests.get(url, params={"since": f"{since:.3f}"}, timeout=_COUNTS_TIMEOUT)
            answer.raise_for_status()
            revisions = answer.json()["revisions"]
            return {
                str(revision): {int(code): int(n) for code, n in codes.items()}
                for revision, codes in revisions.items()
            }
        except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError) as e:
            raise RemoteUnavailable(
                f"the router of {inference_service} at {url} did not give its request counts "
                f"({type(e).__name__}); check `sluice local status`"
            ) from e

    def graph_router_url(self, environment: str, graph: str) -> str:
        """Where InferenceGraph ``graph``'s router listens: its ``url`` once Ready, else its
        port (the router then says itself why it does not answer).

        :class:`~controller.errors.RemoteUnavailable` when no runtime runs for this state
        directory, or it has no router for the graph.
        """
        saved = self._saved(environment)
        entry = (saved.get("inferenceGraphs") or {}).get(graph) or {}
        if entry.get("url"):
            return str(entry["url"])
        port = (saved.get("ports") or {}).get(_GRAPH_PORT_PREFIX + graph)
        if isinstance(port, int) and entry:
            return f"http://127.0.0.1:{port}"
        raise RemoteUnavailable(
            f"InferenceGraph {graph} has no router on the local target of {environment} (yet); "
            "check that the environment's overlay holds it, and `sluice local status`"
        )

    def graph_replay(self, environment: str) -> LocalGraphReplay:
        """The :class:`~controller.ports.GraphReplay` of ``environment``'s graphs: each one's
        router replays (:mod:`controller.local.graph_replay`)."""
        return LocalGraphReplay(lambda graph: self.graph_router_url(environment, graph))

    def _saved(self, environment: str) -> dict[str, Any]:
        """What the runtime of this state directory saved, checked to be live and to run
        ``environment``."""
        state_dir = environment_dir(self.state_dir, environment)
        saved = read_json(state_dir / RUNTIME_FILE)
        if saved is None or not pid_matches(saved.get("pid"), _RUNTIME_MODULE, str(state_dir)):
            # Not a further environment's live runtime: the stack's first (or only) one.
            state_dir, saved = self.state_dir, read_json(self.state_file)
        if saved is None:
            raise RemoteUnavailable(NOT_RUNNING)
        pid = saved.get("pid")
        if not isinstance(pid, int):
            raise RemoteUnavailable(NOT_RUNNING)
        if not pid_matches(pid, _RUNTIME_MODULE, str(state_dir)):
            raise RemoteUnavailable(f"{NOT_RUNNING} (its runtime, pid {pid}, has exited)")
        running = saved.get("env")
        if running and running != environment:
            raise ConfigError(
                f"the local target runs environment {running!r}, not {environment!r}; "
                f"restart it with `sluice local up --env {environment}` (or serve both: "
                f"`sluice local up --env {running} --env {environment}`)"
            )
        return saved
