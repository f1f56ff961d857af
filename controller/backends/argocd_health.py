"""The health Argo CD would show for an InferenceService, by running Argo CD's own Lua check.

Argo CD decides Healthy / Progressing / Degraded / Suspended for a KServe InferenceService with
a Lua script shipped in its repository. Re-implementing its rules would drift (it counts
Unknown conditions as Progressing, builds its message from condition indexes, and so on), so
Sluice runs the script itself (the local target always; the cluster target when the Application
does not list the resource's health): a copy in ``argocd_health.lua`` (package data, with
its source commit in its header), in Lua 5.1 as Argo CD's gopher-lua is, with the
InferenceService converted to a Lua table named ``obj`` exactly as Argo CD converts the JSON.

Argo CD has no check for KServe's InferenceGraph; Sluice ships one of its own
(``argocd_health_inferencegraph.lua``, which a cluster's ``argocd-cm`` can carry) that follows
the graph's ``Ready`` condition, and runs it the same way. :func:`resource_health` picks the
check by the object's kind.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from importlib import resources
from typing import Any, NamedTuple

__all__ = [
    "HEALTH_SCRIPTS",
    "HealthStatus",
    "LuaHealthCheck",
    "inferencegraph_health",
    "inferenceservice_health",
    "resource_health",
]

#: The packaged health script of each kind Sluice deploys.
HEALTH_SCRIPTS = {
    "InferenceService": "argocd_health.lua",
    "InferenceGraph": "argocd_health_inferencegraph.lua",
}
# Argo CD opens only safe libraries; nothing a health check needs touches files or processes.
_UNSAFE_GLOBALS = ("io", "os", "require", "dofile", "loadfile", "load", "loadstring", "debug")


class HealthStatus(NamedTuple):
    """Argo CD's verdict: ``status`` Healthy | Progressing | Degraded | Suspended, a message."""

    status: str
    message: str


class LuaHealthCheck:
    """One Argo CD resource health script, compiled once and callable from any thread.

    The script's body becomes a Lua function of ``obj``: Argo CD sets ``obj`` and runs the
    chunk, which is the same to a script that only reads it and ends with ``return``.
    """

    def __init__(self, script: str) -> None:
        import lupa.lua51 as lua  # lupa 2 ships several Lua versions; Argo CD's is 5.1

        self._runtime = lua.LuaRuntime(register_eval=False, register_builtins=False)
        lua_globals = self._runtime.globals()
        for name in _UNSAFE_GLOBALS:
            lua_globals[name] = None
        self._function = self._runtime.eval(f"function(obj)\n{script}\nend")
        self._lock = threading.Lock()  # a Lua state is not thread-safe

    def __call__(self, obj: Mapping[str, Any]) -> HealthStatus:
        """Run the script on a resource given as its JSON-like dict."""
        with self._lock:
            table = self._runtime.table_from(_plain(obj), recursive=True)
            result = self._function(table)
            return HealthStatus(str(result["status"]), str(result["message"] or ""))


_checks: dict[str, LuaHealthCheck] = {}
_checks_lock = threading.Lock()


def _check(kind: str) -> LuaHealthCheck:
    with _checks_lock:
        if kind not in _checks:
            script = resources.files("controller.backends").joinpath(HEALTH_SCRIPTS[kind])
            _checks[kind] = LuaHealthCheck(script.read_text("utf-8"))
        return _checks[kind]


def inferenceservice_health(obj: Mapping[str, Any]) -> HealthStatus:
    """Argo CD's health of an InferenceService (``apiVersion``, ``metadata``, ``status``...)."""
    return _check("InferenceService")(obj)


def inferencegraph_health(obj: Mapping[str, Any]) -> HealthStatus:
    """The health Argo CD shows for an InferenceGraph with Sluice's check installed."""
    return _check("InferenceGraph")(obj)


def resource_health(obj: Mapping[str, Any]) -> HealthStatus | None:
    """The health of an object of a kind Sluice has a check for (by ``kind``), else None (Argo
    CD shows no health for a kind without a check)."""
    kind = str(obj.get("kind", ""))
    return _check(kind)(obj) if kind in HEALTH_SCRIPTS else None


def _plain(value: Any) -> Any:
    """Dicts and lists only (tuples too become Lua sequences), as JSON would give Argo CD."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
