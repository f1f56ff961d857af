"""The fork server's preload (:mod:`controller.local.forkserver`).

Imported by the fork server (and only there: another import does nothing), this module is the
preload, in this order:

1. a session of its own, so a signal to the starting process's group (``sluice local down``
   stopping the runtime) does not kill the fork server before the runtime has stopped the
   servers it forked (whose exit codes it reports);
2. the environment the heavy modules read when they load (:data:`PRELOAD_ENV`), before any of
   them is imported: the model servers' one OpenMP/OpenBLAS thread, and no background thread
   for Arrow's jemalloc (pandas imports pyarrow, whose allocator starts one by default);
3. the modules every model server imports before it can load a model
   (:data:`controller.local.forkserver.PRELOAD`); after
   each, the process must still have one thread, or the preload fails naming the module, the
   fork server exits and model servers start cold: a fork copies only the calling thread;
4. MLflow's map of the installed distributions' modules, which ``mlflow.pyfunc.load_model``
   builds on a process's first load to check the model's requirements against the
   environment (it reads every installed distribution's file list: 0.7 s of CPU, 85 % of
   loading a small model): built once here, every forked server inherits it. The check itself
   still runs in each server; only its map is shared, and the fork server's installed
   packages are its children's.

The working directory of the starting process is dropped from ``sys.path``: a cold server runs
in its revision's directory and never imports from there.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from controller.local.forkserver import PRELOAD  # standard library only
from controller.local.serving.local_env import LOCAL_ENV

__all__ = ["PRELOAD_ENV"]

PRELOAD_ENV = {**LOCAL_ENV, "JE_ARROW_MALLOC_CONF": "background_thread:false"}


def _threads() -> list[str]:
    """The names of this process's threads, as the kernel lists them."""
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return []
    names = []
    for task in tasks:
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:
            names.append(task.name)
    return names


def _preload() -> None:
    if os.getpid() != os.getpgid(0):
        os.setsid()
    os.environ.update(PRELOAD_ENV)
    sys.path[:] = [p for p in sys.path if p not in ("", str(Path.cwd()))]
    sys.argv = sys.argv[:1]  # importing kserve parses sys.argv
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # the model server will say so when it needs it
            print(f"fork server: cannot preload {name}: {exc}", file=sys.stderr)
        threads = _threads()
        if len(threads) > 1:
            raise RuntimeError(
                f"fork server: importing {name} started a thread ({', '.join(threads)}); "
                "forking now is unsafe, so model servers start cold"
            )
    _map_installed_packages()
    sys.stdout.flush()
    sys.stderr.flush()


def _map_installed_packages() -> None:
    """Step 4: MLflow's modules-to-distributions map, built now (best effort: a release of
    MLflow without it leaves each server to build its own, as a cold server does)."""
    try:
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()  # type: ignore[no-untyped-call]
    except (ImportError, AttributeError) as exc:
        print(f"fork server: cannot map the installed packages: {exc}", file=sys.stderr)


def _in_fork_server() -> bool:
    """Whether this import is the fork server's preload (``multiprocessing.forkserver.main`` is
    importing it), not some other import of the module (the tests import every module)."""
    from multiprocessing import forkserver

    frame = sys._getframe()
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


if _in_fork_server():
    _preload()
