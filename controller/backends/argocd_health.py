"""The health Argo CD would show for an InferenceService, by running Argo CD's own Lua check.

Argo CD decides Healthy / Progressing / Degraded / Suspended for a KServe InferenceService with
a Lua script shipped in its repository. Re-implementing its rules would drift (it counts
Unknown conditions as Progressing, builds its message from condition indexes, and so on), so
Sluice runs the script itself (the local target always; the cluster target when the Application
does not list the resource's health): a copy in ``argocd_health.lua`` (package data, with
its source commit in its header), in Lua 5.1 as Argo CD's gopher-lua is, with the
InferenceService converted to a Lua table named ``obj`` exactly as Argo CD converts the JSON.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from importlib import resources
from typing import Any, NamedTuple

__all__ = ["HealthStatus", "LuaHealthCheck", "inferenceservice_health"]

_SCRIPT = "argocd_health.lua"
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


_default: LuaHealthCheck | None = None
_default_lock = threading.Lock()


def inferenceservice_health(obj: Mapping[str, Any]) -> HealthStatus:
    """Argo CD's health of an InferenceService (``apiVersion``, ``metadata``, ``status``...)."""
    global _default
    with _default_lock:
        if _default is None:
            script = resources.files("controller.backends").joinpath(_SCRIPT).read_text("utf-8")
            _default = LuaHealthCheck(script)
    return _default(obj)


def _plain(value: Any) -> Any:
    """Dicts and lists only (tuples too become Lua sequences), as JSON would give Argo CD."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
