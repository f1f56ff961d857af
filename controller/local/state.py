"""Files and pids the local target leaves behind, read back safely by the next command.

``sluice local up`` returns while its servers keep running, so every later command (``status``,
``down``, a restarted runtime) learns what runs from JSON files under the state directory. A
pid in such a file may have been reused by an unrelated process after a crash or a reboot, so
a pid is only trusted, and only ever signalled, when its command line still carries a marker
that only our process has (a path inside our state directory).
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "ENVIRONMENTS_DIR",
    "PREDICTION_LOG_FILE",
    "REMOTE_FILE",
    "environment_dir",
    "environment_root",
    "pid_matches",
    "read_json",
    "runtime_dirs",
    "stop_pid",
    "utc_now",
    "write_json",
]

#: The prediction log's file name under the stack's state directory, where every router writes
#: it (the one definition: the commands that read the log by default look for this name; here,
#: not in the runtime, so that ``sluice serve`` finds it without the local extra).
PREDICTION_LOG_FILE = "predictions.sqlite"
#: Where a stack serving several environments keeps the runtime of each one after the first.
ENVIRONMENTS_DIR = "environments"
#: The GitOps remote and the environments the last ``sluice local up`` synced, kept after
#: ``down`` (here, not in the stack, so that ``sluice serve`` reads it without the local extra).
REMOTE_FILE = "remote.json"


def environment_dir(root: Path, env: str) -> Path:
    """The state directory of the runtime of ``env`` as a further environment of the stack in
    ``root`` (``sluice local up --env staging --env production``: production's); the first
    environment's runtime keeps its state in ``root`` itself."""
    return root / ENVIRONMENTS_DIR / env


def environment_root(root: Path, env: str, first_env: str) -> Path:
    """Where the runtime of ``env`` keeps its state in the stack of ``root`` whose first
    environment is ``first_env``: ``root`` itself for that one (as a one-environment stack
    always had it), :func:`environment_dir` for each further one."""
    return root if env == first_env else environment_dir(root, env)


def runtime_dirs(root: Path) -> dict[str, Path]:
    """Each environment the stack in ``root`` serves, the first first, with its runtime's state
    directory (``root`` for the first, :func:`environment_dir` for each further one), as the
    last ``sluice local up`` recorded them; {} before any. A stack started before the record
    named every environment names its first one alone."""
    recorded = read_json(root / REMOTE_FILE) or {}
    names = recorded.get("environments") or [recorded.get("env")]
    served = list(dict.fromkeys(str(name) for name in names if name))
    return {name: environment_root(root, name, served[0]) for name in served}


def utc_now() -> str:
    """RFC 3339 time in UTC to the second, as Kubernetes stamps it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON via a rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    partial.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _cmdline(pid: int) -> list[str] | None:
    """The process's arguments; None when it is gone or a zombie (whose cmdline is empty)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    args = [arg.decode("utf-8", "replace") for arg in raw.split(b"\0") if arg]
    return args or None


def pid_matches(pid: int | None, *markers: str) -> bool:
    """Whether ``pid`` runs and each of ``markers`` is contained in one of its arguments."""
    if not pid or pid <= 0:
        return False
    args = _cmdline(pid)
    return args is not None and all(any(m in arg for arg in args) for m in markers)


def stop_pid(pid: int | None, *markers: str, timeout: float = 10.0) -> bool:
    """Stop the process group led by ``pid`` if ``pid`` is still ours; True if it was.

    Our servers run in their own sessions, so the group holds what they forked. SIGTERM
    first, SIGKILL after ``timeout``; a pid whose command line lacks a marker is left alone.
    """
    if pid is None or not pid_matches(pid, *markers):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_matches(pid, *markers):
                return True
            time.sleep(0.05)
    return True
