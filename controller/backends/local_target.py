"""The local target as Sluice's deployment target: what its runtime last wrote to ``runtime.json``.

The local runtime (:mod:`controller.local.runtime`) plays Argo CD, KServe and Knative for one
environment and saves, on every pass, an Argo CD-shaped Application and each
InferenceService as the Kubernetes API would return it. Reading that file, and mapping it with
the cluster target's :func:`~controller.backends.kubernetes_target.observation_from`, gives the
rollout the same observation on a laptop as on a cluster, with two differences: the local
router answers a tag at ``<router>/_tag/<tag>`` instead of Knative's tag hosts, and it mirrors
a shadow phase's requests by itself (``mirrors_shadow``), so no VirtualService goes into Git.

A file whose runtime has exited would show a frozen past as the present, so the runtime's pid
must still run *our* runtime (its command line carries the module and this state directory,
as :mod:`controller.local.state` checks before trusting any pid).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from controller.backends.kubernetes_target import observation_from
from controller.errors import ConfigError, RemoteUnavailable
from controller.local.health import HealthStatus
from controller.local.state import pid_matches, read_json
from controller.target_types import TargetObservation

__all__ = ["NOT_RUNNING", "RUNTIME_FILE", "LocalTarget"]

#: The error message when no runtime answers for the state directory.
NOT_RUNNING = "the local target is not running; start it with `sluice local up`"
#: The runtime's state file, as :data:`controller.local.runtime.RUNTIME_FILE` names it; not
#: imported from there, because importing the runtime imports the model servers (pandas...).
RUNTIME_FILE = "runtime.json"
# The markers `sluice local up` starts the runtime with (controller.local.stack).
_RUNTIME_MODULE = "controller.local.runtime"


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
        saved = read_json(self.state_file)
        if saved is None:
            raise RemoteUnavailable(NOT_RUNNING)
        pid = saved.get("pid")
        if not isinstance(pid, int):
            raise RemoteUnavailable(NOT_RUNNING)
        if not pid_matches(pid, _RUNTIME_MODULE, str(self.state_dir)):
            raise RemoteUnavailable(f"{NOT_RUNNING} (its runtime, pid {pid}, has exited)")
        running = saved.get("env")
        if running and running != environment:
            raise ConfigError(
                f"the local target runs environment {running!r}, not {environment!r}; "
                f"restart it with `sluice local up --env {environment}`"
            )
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
