"""What a ``sluice`` command costs in CPU before it does its work: this checkout against a base
commit (the baseline), per command, in CPU seconds.

``python benchmarks/command_start.py [--repeats N] [--base REF]``

Every ``sluice`` command is a fresh Python process, and most of what one spends before it
reaches a remote, a registry or a file is importing modules. Each command below runs as a user
runs it (``sluice ARGS``: the console script's ``main`` in a new interpreter), with input that
makes it end early: help, the config's schema, or a Git remote that does not exist, so that
what is measured is the start and not the work. The baseline is the same commands in a
detached ``git worktree`` of ``--base`` (by default the commit before the commands' imports were
trimmed), made here and removed at the end; the current checkout runs as it is, uncommitted
changes included.

Per command: CPU seconds (user + system, of the process and the ``git`` it runs, from the
parent's rusage), median of ``--repeats`` runs, both trees taking turns so that they see the
same machine load, after one warm-up round that also writes each tree's bytecode (as ``make
test`` does: ``PYTHONDONTWRITEBYTECODE`` is cleared). The ratio is this checkout's CPU over the
baseline's. Each run has its own working directory and ``HOME`` (no ``sluice.yaml``, no local
stack), and ``MLFLOW_TRACKING_URI`` points to a closed port.
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
#: main before the commands' heavy imports moved off their start (what this branch was merged into).
DEFAULT_BASE = "893f854"
_MISSING = "/nonexistent/gitops.git"
_MODEL = ("fraud-detector", "--env", "local", "--repo", _MISSING)
#: (name, arguments): each ends before the work, the same way in both trees.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sluice --help", ("--help",)),
    ("sluice config schema", ("config", "schema")),
    ("sluice propose (no remote)", ("propose", *_MODEL)),
    ("sluice status (no remote)", ("status", "--repo", _MISSING)),
    ("sluice rollout (no remote)", ("rollout", *_MODEL)),
    ("sluice lineage (no remote)", ("lineage", *_MODEL)),
    ("sluice local status", ("local", "status")),
    ("sluice drift --help", ("drift", "--help")),
    ("sluice init --help", ("init", "--help")),
    ("sluice graph propose --help", ("graph", "propose", "--help")),
    ("sluice serve (no remote)", ("serve", "--repo", _MISSING, "--port", "0")),
)
#: What the console script runs (``sluice = controller.cli:main``).
_SLUICE = "import sys; from controller.cli import main; sys.exit(main())"


def run_once(tree: Path, args: tuple[str, ...], scratch: Path) -> float:
    """CPU seconds of one ``sluice ARGS`` with ``tree``'s ``controller`` package."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env |= {
        "PYTHONPATH": str(tree),
        "HOME": str(scratch),
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        "SLUICE_STATE_DIR": str(scratch / "state"),
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-c", _SLUICE, *args],
        cwd=scratch,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        check=False,  # most of them end in an error on purpose
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(trees: dict[str, Path], repeats: int, scratch: Path) -> dict[tuple[str, str], float]:
    """Median CPU per (tree, command); the first round warms caches and writes bytecode."""
    runs: dict[tuple[str, str], list[float]] = {}
    for round_ in range(repeats + 1):
        for name, args in COMMANDS:
            for label, tree in trees.items():
                found = run_once(tree, args, scratch)
                if round_:
                    runs.setdefault((label, name), []).append(found)
    return {key: statistics.median(found) for key, found in runs.items()}


def report(results: dict[tuple[str, str], float], base: str) -> None:
    print(f"{'command':<32} {'base ' + base:>14} {'this checkout':>14} {'ratio':>6}")
    total_base = total_now = 0.0
    for name, _ in COMMANDS:
        before, now = results[("base", name)], results[("now", name)]
        total_base, total_now = total_base + before, total_now + now
        print(f"{name:<32} {before:>12.3f} s {now:>12.3f} s {now / before:>5.2f}x")
    print(f"{'all of them':<32} {total_base:>12.3f} s {total_now:>12.3f} s "
          f"{total_now / total_base:>5.2f}x")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="runs per command (median)")
    parser.add_argument("--base", default=DEFAULT_BASE, help="the baseline's commit or branch")
    args = parser.parse_args()
    known = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if known.returncode != 0:
        print(f"command_start.py: no commit {args.base!r} in {ROOT} (a shallow clone?); "
              "fetch it or pass --base REF")  # fmt: skip
        return 2
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, median of {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="sluice-command-start-") as tmp:
        base_tree, scratch = Path(tmp) / "base", Path(tmp) / "scratch"
        scratch.mkdir()
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(base_tree),
             args.base],
            check=True,
        )  # fmt: skip
        try:
            results = measure({"base": base_tree, "now": ROOT}, args.repeats, scratch)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
                check=False,
            )
    report(results, args.base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
