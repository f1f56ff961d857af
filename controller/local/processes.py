"""Supervise one local server process: start it, wait until it answers, stop it and its children.

Servers such as ``mlflow server`` fork workers, and PostgreSQL forks a process per connection,
so a process is started in its own session and stopped as a group: nothing it forked survives
:meth:`ManagedProcess.stop`. A start that fails says why in one line, with the end of the
process's log, instead of a bare timeout.

The group is named by the leader's pid, and pids are reused (32,768 of them on many machines,
a few minutes' worth while a test suite runs). Once the leader is reaped and the kernel hands
its number to a new process, the number is no longer this group's: the kernel keeps a pid
that still names a live group, so a live process holding it means the group is gone. Such a
group is neither waited for nor signalled, so stopping a server that already exited never
kills an unrelated one that happens to hold the old number.

A model server may instead be forked from the local fork server (``warm``,
:mod:`controller.local.forkserver`): the same process seen from outside, watched through the
same two calls (:class:`Child`: ``pid`` and ``poll``), so all of the above holds for it alike.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import pwd
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from controller.errors import ConfigError, SluiceError, TransientError
from controller.local import forkserver
from controller.redact import redact

__all__ = ["ManagedProcess", "free_port", "http_ok"]

_POLL_SECONDS = 0.1
_KILL_GRACE_SECONDS = 5.0
_TAIL_BYTES = 16_384
_TAIL_LINE_CHARS = 400


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    The port is only free until someone binds it; a server started on it straight away
    almost always wins, and a lost race shows as a start failure naming the address.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Local services are never reached through an HTTP proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Child(Protocol):
    """A started process as :class:`ManagedProcess` watches it: ``subprocess.Popen``, or a
    :class:`~controller.local.forkserver.ForkedChild` for a warm start."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


def http_ok(url: str, *, timeout: float = 1.0) -> bool:
    """Say whether ``GET url`` answers 200; any connection or HTTP error is a no."""
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):
        return False


class ManagedProcess:
    """One server process in its own process group, logging to a file.

    ``env`` is added to a copy of this process's environment. ``stop_signal`` is what asks the
    server to shut down cleanly; it goes to the whole group unless ``signal_group`` is false
    (PostgreSQL wants it on the postmaster only). ``user`` runs the process as another OS
    user, which only root may do.

    ``warm`` starts a ``python -m`` command as a fork of the local fork server
    (:mod:`controller.local.forkserver`), which has already imported what model servers need;
    nothing else about the process changes. Without a ``user``, on Linux, and unless
    ``SLUICE_LOCAL_COLD_START`` is set; otherwise, or when the fork server fails, the command
    starts as a new process.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        name: str | None = None,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        signal_group: bool = True,
        warm: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env or {})
        self.cwd = cwd
        self.name = name or Path(self.argv[0]).name
        self.user = user
        self.stop_signal = stop_signal
        self.signal_group = signal_group
        self.warm = warm
        #: Seconds from start until the ready check first passed; None until then.
        self.ready_seconds: float | None = None
        self._child: Child | None = None
        #: Whether the process was forked from the fork server (see ``warm``).
        self.started_warm = False
        self._started_at = 0.0
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Start the process; its stdout and stderr are appended to ``log_path``."""
        if self._child is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.warm and forkserver.warm_start_possible(self.argv, user=self.user):
            try:
                self._child = forkserver.start_forked(
                    self.argv,
                    env={**os.environ, **self.env},
                    cwd=self.cwd,
                    log_path=self.log_path,
                )
            except forkserver.ForkServerUnavailable:
                pass  # logged once; this and every later start is cold
            else:
                self.started_warm = True
                self._started_at = time.monotonic()
                return self
        # Popen keeps root's group and supplementary groups unless told otherwise.
        group = _primary_group(self.user) if self.user else None
        with self.log_path.open("ab") as log:
            try:
                self._child = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env={**os.environ, **self.env},
                    start_new_session=True,
                    user=self.user,
                    group=group,
                    extra_groups=[] if self.user else None,
                )
            except OSError as exc:
                raise ConfigError(
                    f"cannot run {self.argv[0]} for {self.name}: {exc.strerror}; "
                    "check that it is installed and executable"
                ) from exc
        self._started_at = time.monotonic()
        return self

    def wait_ready(
        self,
        check: Callable[[], bool],
        timeout: float,
        *,
        error: type[SluiceError] = TransientError,
        interval: float = _POLL_SECONDS,
    ) -> None:
        """Poll ``check`` until it passes; on failure stop the process and raise ``error``.

        A process that exits while we wait fails at once rather than at the timeout, and the
        message carries the end of its log, which is where the reason is.
        """
        child = self._require_started()
        deadline = time.monotonic() + timeout
        while True:
            if check():
                self.ready_seconds = time.monotonic() - self._started_at
                return
            code = child.poll()
            if code is not None:
                self.stop()
                raise error(
                    f"{self.name} exited with code {code} before it was ready "
                    f"(log {self.log_path}): {self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise error(
                    f"{self.name} did not become ready within {timeout:g}s "
                    f"(log {self.log_path}): {self.log_tail()}"
                )
            time.sleep(interval)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the group to shut down, then kill what is left after ``timeout`` seconds.

        Calling it again, or on a process that was never started, does nothing.
        """
        child = self._child
        if child is None or self._stopped:
            return
        if child.poll() is None:
            self._signal(self.stop_signal, group=self.signal_group)
        if not self._wait_gone(child, timeout):
            self._signal(signal.SIGKILL, group=True)
            self._wait_gone(child, _KILL_GRACE_SECONDS)
        self._stopped = True

    def __enter__(self) -> Self:
        if self._child is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The process id, which is also its process group id."""
        return self._require_started().pid

    @property
    def alive(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self._child is not None and self._child.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited (negative: killed by that signal)."""
        return None if self._child is None else self._child.poll()

    def log_tail(self, lines: int = 12) -> str:
        """The last non-empty lines of the log on one line, secrets masked."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - _TAIL_BYTES))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        kept = [line.strip()[:_TAIL_LINE_CHARS] for line in text.splitlines() if line.strip()]
        return redact(" | ".join(kept[-lines:])) or "(empty log)"

    # -- internals -------------------------------------------------------------------------

    def _require_started(self) -> Child:
        if self._child is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self._child

    def _signal(self, sig: signal.Signals, *, group: bool) -> None:
        child = self._require_started()
        pid = child.pid
        if _recycled(child):
            return  # the leader was reaped and its number given to another process
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            if group and child.poll() is None:  # a fork not yet in a session of its own
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def _wait_gone(self, child: Child, timeout: float) -> bool:
        """Wait until the leader is reaped and no member of its group is left running."""
        deadline = time.monotonic() + timeout
        while True:
            if child.poll() is not None and (_recycled(child) or not _group_running(child.pid)):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def _primary_group(user: str) -> int:
    try:
        return pwd.getpwnam(user).pw_gid
    except KeyError:
        raise ConfigError(f"there is no OS user {user!r} to run a server as: create it") from None


def _recycled(child: Child) -> bool:
    """Whether the leader was reaped and another process now has its pid (then the group is
    gone: a pid naming a live group is never reused)."""
    if child.poll() is None:
        return False
    try:
        os.kill(child.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_running(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is running (zombies awaiting a reaper do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False
