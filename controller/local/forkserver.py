"""Warm starts: model servers forked from one process that has already imported their libraries.

A model server (``python -m controller.local.serving``) spends about 2.4 s of CPU importing
kserve, MLflow, scikit-learn and pandas before it loads its model: the latency of every new
revision on the local target, paid again by each of them. Instead, the first model server a
process starts also starts one fork server (:mod:`multiprocessing.forkserver`) that imports
them once (:mod:`controller.local.serving.preload`); every model server is then a fork of it,
ready to load its model within a fraction of that.

A forked server is the process a cold start would have made, as far as anything outside it can
tell: it leads its own session (pid == process group id), its stdin is /dev/null and its stdout
and stderr append to its log, its environment is exactly ``{**os.environ, **env}`` as the
starting process had it at start time, it runs in ``cwd``, and its command line
(``/proc/PID/cmdline``, what ``ps`` and the state files' pid markers read) is the cold start's
``argv``, written over the fork server's own (the fork server's command line leaves room for
it; when a command line would not fit, the fork execs ``argv`` instead, a cold start in all but
name). It then runs ``python -m MODULE`` as the interpreter would (:func:`runpy.run_module`),
exits with the code Python would (``SystemExit`` as Python reads it, 1 and a traceback for an
uncaught exception) after joining its threads and running the ``atexit`` handlers, and the fork
server reaps it and reports the code, a negative one for a signal, as ``Popen.poll`` does.

The fork server leads a session of its own too, so a signal to the starting process's group
(how ``sluice local down`` stops the runtime) leaves it running until the runtime has stopped
its servers and exited; it exits when the process that started it does. The children do not
hold it open. If it dies anyway, a child it can no longer report on counts as running while a
process with its pid and start time runs.

Modules imported by the preload read the environment the fork server started with: the
starting process's plus :data:`controller.local.serving.preload.PRELOAD_ENV`, set before any of
them is imported (one OpenMP and OpenBLAS thread, as every local model server runs with; no
Arrow jemalloc background thread, so the fork server stays single-threaded: a fork copies only
the forking thread, and a lock another thread held would stay locked in every child). The
preload refuses to finish when any thread is running, and then model servers start cold.

The environment is set inside the fork server, by the preload's first step, rather than in
the starting process before it launches the fork server (which inherits its ``os.environ`` at
that moment): the runtime is multi-threaded, and changing its environment would race with its
other threads and leak into everything else it starts.

The children are not ``multiprocessing.Process`` objects, though the fork server is
multiprocessing's: a Process child would first re-import the starting program's main module
(Python 3.11's fork server does not preload it; the runtime's, or pytest's, would run in every
model server), take the starting process's ``sys.argv``, ``sys.path`` and working directory,
and be joined by multiprocessing's ``atexit`` handler, which would hold up the runtime's exit
while a server runs (or, as a daemon, be terminated and barred from starting processes). The
fork server is asked for a child directly (``connect_to_new_process``) and sent an empty
preparation and a :class:`_Command`, which it runs as it would a Process.

Only ``python -m`` commands of this interpreter, for the current user, on Linux and Python 3.11
(:data:`WARM_PYTHONS`), start warm;
``SLUICE_LOCAL_COLD_START=1`` starts every one cold.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import runpy
import select
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing import forkserver, spawn
from pathlib import Path

__all__ = [
    "COLD_START_ENV",
    "ForkServerUnavailable",
    "ForkedChild",
    "prewarm",
    "start_forked",
    "warm_start_possible",
]

#: The Python versions whose :mod:`multiprocessing.forkserver` internals (the child protocol,
#: ``connect_to_new_process``, the liveness pipe) this module was tested against; on any other
#: every model server starts cold, which is slower but never wrong.
WARM_PYTHONS = frozenset({(3, 11)})
#: Set to 1 (or true, yes) to start every model server as a new process.
COLD_START_ENV = "SLUICE_LOCAL_COLD_START"
PRELOAD_MODULE = "controller.local.serving.preload"
#: What the preload imports, in order, after setting up the fork server: what every model
#: server imports before it loads a model (``mlflow.sklearn`` for the scikit-learn flavour).
PRELOAD = (
    "numpy",
    "pandas",
    "sklearn.ensemble",
    "mlflow.pyfunc",
    "mlflow.sklearn",
    "kserve",
    "controller.local.serving.server",
    "controller.local.forkserver",
)
#: How long the first start may wait for the fork server's preload before starting cold.
_PRELOAD_TIMEOUT_SECONDS = 120.0
_SESSION_TIMEOUT_SECONDS = 10.0
_log = logging.getLogger("sluice.local.forkserver")
_lock = threading.Lock()
_broken: str | None = None
_configured = False
_server_env: dict[str, str] | None = None


class ForkServerUnavailable(Exception):
    """The fork server could not start a child (it then stays unused by this process)."""


def warm_start_possible(argv: Sequence[str], *, user: str | None = None) -> bool:
    """Whether ``argv`` can start as a fork: ``python -m MODULE ...`` of this interpreter, as
    this user, on Linux with ``fork``, unless ``SLUICE_LOCAL_COLD_START`` asks for cold."""
    if os.environ.get(COLD_START_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    if _broken is not None or user is not None or sys.platform != "linux":
        return False
    if sys.version_info[:2] not in WARM_PYTHONS:
        return False  # the fork server's private protocol is only known for these
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    return len(argv) >= 3 and argv[0] == _executable() and argv[1] == "-m"


def prewarm() -> bool:
    """Start the fork server now, where warm starts are possible, rather than with the first
    model server: its preload then runs while the runtime syncs, so the first revision starts
    warm too (on a loaded laptop the preload took 5 s of that revision's start). Returns at
    once (the preload runs in the fork server); False when warm starts are off or it could not
    start (the first model server then tries again, or starts cold)."""
    if not warm_start_possible([_executable(), "-m", PRELOAD_MODULE]):
        return False
    with _lock:
        _configure()
        try:
            forkserver.ensure_running()
        except OSError as exc:
            _log.warning("cannot start the fork server yet (%s): the first model server will", exc)
            return False
    return True


def start_forked(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None, log_path: Path
) -> ForkedChild:
    """Fork ``argv`` (``python -m MODULE ARGS``) from the fork server, started on first use.

    ``env`` is the child's whole environment. Returns once the child leads its own session;
    :class:`ForkServerUnavailable` when the fork server cannot start it (then, and for every
    later call, start the command as a new process instead).
    """
    global _broken
    command = _Command(list(argv), dict(env), str(cwd) if cwd else None, str(log_path))
    payload = pickle.dumps({}) + pickle.dumps(command)  # spawn's preparation data, then "process"
    with _lock:
        _configure()
        if _interpreter_env(env) != _server_env:  # not `broken`: only this command starts cold
            raise ForkServerUnavailable("its PYTHON* variables differ from the fork server's")
        try:
            status_r, data_w = forkserver.connect_to_new_process([])
        except OSError as exc:
            _broken = f"cannot start the fork server: {exc}"
            raise ForkServerUnavailable(_broken) from exc
    try:
        with os.fdopen(data_w, "wb", closefd=True) as data:
            data.write(payload)
        if not _readable(status_r, _PRELOAD_TIMEOUT_SECONDS):
            raise TimeoutError("no answer from the fork server")
        pid = int(forkserver.read_signed(status_r))
    except (OSError, EOFError) as exc:
        if isinstance(exc, TimeoutError):  # it may still fork the child: then kill it
            threading.Thread(target=_kill_late_child, args=(status_r,), daemon=True).start()
        else:
            os.close(status_r)
        _broken = f"the fork server did not start a model server ({exc}); see its log"
        _log.warning("%s: model servers start cold from now on", _broken)
        raise ForkServerUnavailable(_broken) from exc
    child = ForkedChild(pid, status_r)
    child.wait_for_session(_SESSION_TIMEOUT_SECONDS)
    return child


class ForkedChild:
    """A child of the fork server, seen as ``subprocess.Popen`` sees its child: ``pid`` and
    a non-blocking ``poll()`` that is None while it runs and its exit code after."""

    def __init__(self, pid: int, status_fd: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._status_fd: int | None = status_fd
        self._start_time = _start_time(pid)
        self._orphaned = False

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal) once the fork server reaped it."""
        if self.returncode is not None:
            return self.returncode
        if self._orphaned:
            return self._orphan_poll()
        fd = self._status_fd
        assert fd is not None
        if not _readable(fd, 0):
            return None
        try:
            code = int(forkserver.read_signed(fd))
        except (OSError, EOFError):  # the fork server died: it can no longer say
            self._orphaned = True
            self._close()
            return self._orphan_poll()
        self.returncode = code
        self._close()
        return code

    def wait_for_session(self, timeout: float) -> None:
        """Wait until the child has called ``setsid`` (its first step), or has exited."""
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            try:
                if os.getpgid(self.pid) == self.pid:
                    return
            except ProcessLookupError:
                pass
            time.sleep(0.001)

    def _orphan_poll(self) -> int | None:
        if self._start_time is not None and _start_time(self.pid) == self._start_time:
            return None
        self.returncode = 255  # as multiprocessing says of a child whose fork server died
        return self.returncode

    def _close(self) -> None:
        fd, self._status_fd = self._status_fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self._close()


# -- the parent's side -------------------------------------------------------------------------


def _executable() -> str:
    return os.fsdecode(spawn.get_executable())


def _configure() -> None:
    global _configured, _server_env
    if not _configured:
        # The fork server starts with this process's environment, and its sys.path and
        # interpreter settings came from these: a command with other ones starts cold.
        _server_env = _interpreter_env(os.environ)
        # Replaces multiprocessing's default ['__main__']: the fork server must not import the
        # starting program (pytest, the runtime), only what model servers need. The preload
        # module imports PRELOAD itself (names after it are already imported then); they are
        # listed too because the list is on the fork server's command line, whose room its
        # children's command lines take.
        forkserver.set_forkserver_preload([PRELOAD_MODULE, *PRELOAD])
        _configured = True


def _readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` has data or EOF within ``timeout`` seconds (poll: any fd number)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _kill_late_child(status_fd: int) -> None:
    """Kill the child of a start given up on, should the fork server fork it after all (its pid
    stays its own until the fork server reaps it and says so on ``status_fd``)."""
    try:
        pid = int(forkserver.read_signed(status_fd))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        forkserver.read_signed(status_fd)  # its exit code: reaped
    except (OSError, EOFError):
        pass
    finally:
        os.close(status_fd)


def _interpreter_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables the interpreter reads at start-up (``PYTHONPATH`` and the like)."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (with its pid, it names one process); None
    when there is no such process or it is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


# -- the child's side ---------------------------------------------------------------------------


class _Command:
    """What a forked child runs. The fork server unpickles it and calls ``_bootstrap`` as it
    would a ``multiprocessing.Process``'s (without its main-module import and bookkeeping), then
    exits with the code it returns."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None, log: str) -> None:
        self.argv, self.env, self.cwd, self.log = argv, env, cwd, log

    def _bootstrap(self, parent_sentinel: int) -> int:
        os.setsid()  # first: the parent waits for pid == pgid
        _close_inherited(parent_sentinel)
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        for fd, target in ((null, 0), (log, 1), (log, 2)):
            os.dup2(fd, target)
        os.close(null)
        os.close(log)
        os.environ.clear()
        os.environ.update(self.env)
        if self.cwd:
            os.chdir(self.cwd)
        if not _set_command_line(self.argv):
            print("warm start: the command line does not fit; starting cold", file=sys.stderr)
            sys.stderr.flush()
            os.execve(self.argv[0], self.argv, self.env)  # noqa: S606 (the cold start's argv)
        return _run_module(self.argv[2], self.argv[3:])


def _close_inherited(parent_sentinel: int) -> None:
    """Close what a forked child inherits and a new process would not have: the pipe from its
    parent, the fork server's liveness pipe (so the fork server exits with the runtime) and
    multiprocessing's resource tracker (started again if the server ever needs it)."""
    from multiprocessing import resource_tracker

    fds = [parent_sentinel]
    server = getattr(forkserver, "_forkserver", None)
    if server is not None and getattr(server, "_forkserver_alive_fd", None) is not None:
        fds.append(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    if tracker is not None and getattr(tracker, "_fd", None) is not None:
        fds.append(tracker._fd)
        tracker._fd = None
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _set_command_line(argv: list[str]) -> bool:
    """Write ``argv`` over this process's command line (``/proc/self/cmdline``), NUL-padded to
    the room the fork server's own command line took; False when it does not fit."""
    try:
        stat = Path("/proc/self/stat").read_text()
        fields = stat[stat.rfind(")") + 2 :].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (proc(5))
    except (OSError, IndexError, ValueError):
        return False
    title = b"\0".join(os.fsencode(arg) for arg in argv) + b"\0"
    if not start or len(title) > end - start:
        return False
    ctypes.memmove(start, title.ljust(end - start, b"\0"), end - start)
    return True


def _run_module(module: str, args: list[str]) -> int:
    """Run ``python -m module args`` in this process and return the exit code Python would."""
    sys.argv = [module, *args]  # run_module sets argv[0] to the module's file
    sys.path.insert(0, str(Path.cwd()))  # as `python -m` does
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # the interpreter's own top level
        sys.excepthook(*sys.exc_info())
        code = 1
    _finalize()
    return code


def _exit_code(exc: SystemExit) -> int:
    """The status ``raise SystemExit(code)`` gives a Python process."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _finalize() -> None:
    """What the interpreter does at exit before the process ends: join non-daemon threads,
    run ``atexit`` handlers, flush stdout and stderr (the fork server then calls ``_exit``)."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
