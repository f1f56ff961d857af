"""What reaching the registry costs a ``sluice`` command: MLflow's Python client (the baseline,
how Sluice reached it before) against Sluice's REST client, in CPU seconds.

``python benchmarks/cli_startup.py [--repeats N] [--no-server]``

Each measurement is a fresh Python process, as every ``sluice`` command is one, that imports a
client and makes one registry call (every registered model's aliases, what ``sluice serve`` asks
each pass) against a local MLflow server started here (SQLite, proxied artifacts). Two pairs,
baseline first:

- **registry client**: ``import mlflow.tracking`` and ``MlflowClient(uri)
  .search_registered_models()``, against ``import controller.backends.mlflow_registry`` and
  ``MlflowRegistry(uri).all_aliases()`` (``requests``, no ``mlflow`` import);
- **sluice propose's imports**: the same, each after importing ``controller.commands.propose``
  (the baseline also imports ``mlflow.artifacts``, as the adapter did): what a command pays,
  with the modules it loads whichever client it uses (pandas, pydantic, GitPython…).

The interpreter alone (``python -c pass``) is the floor. Per row: CPU seconds (user + system)
of the imports and the call, measured inside the process, and of the whole process
(interpreter start included, from the parent's rusage); medians of ``--repeats`` runs, all rows
taking turns so that they see the same machine load; the ratio is to the pair's baseline.
``--no-server`` times the imports alone.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.local.services import start_mlflow  # noqa: E402

_PROBE = """
import os, sys, time
started = time.process_time()
uri = os.environ.get("PROBE_URI")
{body}
assert {check}, "the probe did not do its work"
print(time.process_time() - started)
"""
_MLFLOW = (
    "from mlflow.tracking import MlflowClient\n"
    "found = list(MlflowClient(uri).search_registered_models()) if uri else []"
)
_REST = (
    "from controller.backends.mlflow_registry import MlflowRegistry\n"
    "found = MlflowRegistry(uri).all_aliases() if uri else {}"
)
_PROPOSE = "import controller.commands.propose\n"
#: (pair, row) -> (probe body, what must hold after it)
CASES = {
    ("registry client", "MLflow client (baseline)"): (_MLFLOW, "'mlflow' in sys.modules"),
    ("registry client", "Sluice REST"): (_REST, "'mlflow' not in sys.modules"),
    ("sluice propose's imports", "with MLflow client (baseline)"): (
        f"import mlflow.artifacts\n{_PROPOSE}{_MLFLOW}",
        "'mlflow' in sys.modules",
    ),
    ("sluice propose's imports", "with Sluice REST"): (
        f"{_PROPOSE}{_REST}",
        "'mlflow' not in sys.modules",
    ),
    ("interpreter", "python -c pass"): ("pass", "True"),
}
Case = tuple[str, str]


def run_once(case: Case, tracking_uri: str | None) -> tuple[float, float]:
    """(CPU of import and call inside the process, CPU of the whole process)."""
    body, check = CASES[case]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROBE_URI": tracking_uri or ""}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(body=body, check=check)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    whole = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(done.stdout.strip().splitlines()[-1]), whole


def measure(tracking_uri: str | None, repeats: int) -> dict[Case, tuple[float, float]]:
    runs: dict[Case, list[tuple[float, float]]] = {case: [] for case in CASES}
    for case in CASES:  # a warm-up round: the first run pays for cold file caches
        run_once(case, tracking_uri)
    for _ in range(repeats):
        for case in CASES:
            runs[case].append(run_once(case, tracking_uri))
    return {
        case: (
            statistics.median(inside for inside, _ in found),
            statistics.median(whole for _, whole in found),
        )
        for case, found in runs.items()
    }


def report(results: dict[Case, tuple[float, float]], *, call: bool) -> None:
    what = "imports + one call" if call else "imports"
    print(f"{'':<56} {what + ' CPU':>20} {'whole process':>14} {'ratio':>6}")
    baseline: dict[str, tuple[float, float]] = {}
    for (pair, row), (inside, whole) in results.items():
        base = baseline.setdefault(pair, (inside, whole))
        paired = sum(name == pair for name, _ in results) > 1
        ratio = f"{whole / base[1]:>5.2f}x" if paired else ""
        print(f"{pair + ': ' + row:<56} {inside:>18.3f} s {whole:>12.3f} s {ratio}")
    for pair, (base_inside, base_whole) in baseline.items():
        rows = [found for (name, _), found in results.items() if name == pair]
        if len(rows) == 2:
            inside, whole = rows[1]
            print(
                f"{pair}: Sluice REST saves {base_whole - whole:.2f} s of CPU per process "
                f"({base_inside / inside:.1f}x less for the {what}, {base_whole / whole:.1f}x "
                "less for the whole process)"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per client (median)")
    parser.add_argument("--no-server", action="store_true", help="time the imports alone")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, median of {args.repeats}")
    if args.no_server:
        report(measure(None, args.repeats), call=False)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with start_mlflow(
            backend_store_uri=f"sqlite:///{root / 'mlflow.db'}",
            artifacts_dir=root / "artifacts",
            log_dir=root,
        ) as server:
            report(measure(server.tracking_uri, args.repeats), call=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
