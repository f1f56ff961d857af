"""What one `sluice serve` pass costs per watched model, at two sizes, against the old pass.

For each size (100 and 1,000 models by default, spread over E environments) the script starts
a real MLflow server (SQLite) and builds a bare git repository, then times, in one run, the
old way (the baseline, reproduced here) and the current one:

- an idle pass (nothing changed): the old scan read every pin (``cat-file --batch``) and parsed
  it, and parsed every environment file, each pass; the current one lists the pins' blob ids
  (``ls-tree``) and parses only content it has not seen;
- the registry scan with 10 watched models: the old one paged through every registered model
  (``search_registered_models``), the current one asks for the watched names only
  (``name IN (...)``); one ``get_registered_model`` per name is timed too, the alternative;
- a pass where every alias moved: the scan, then proposals (commit and push a branch each) on
  a sample of the models, old and current interleaved (each on its own models and clone, the
  same overlays): the old proposal checked the branch out (``checkout -B``, ``reset --hard``,
  ``clean``) and committed with ``git commit``, and parsed the environment file and every
  document kustomize rendered; the current one builds the commit with ``write-tree`` and
  ``commit-tree`` and pushes it by sha, and parses only what changed.

Every figure is per model (or per proposal), so growth shows as a difference between sizes.
The last line is the summary. Usage:
python benchmarks/reconcile_scale.py [--sizes 100 1000] [--environments 10] [--proposals 30]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.backends.git_repo import GitWorkspace  # noqa: E402
from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http  # noqa: E402
from controller.errors import ManifestInvalid  # noqa: E402
from controller.local.services import start_mlflow  # noqa: E402
from controller.manifests import environment, render  # noqa: E402
from controller.manifests.manifest import load_pin, read_release  # noqa: E402
from controller.null_ports import NoForge  # noqa: E402
from controller.ports import CommitOutcome  # noqa: E402
from controller.proposals.proposal_scan import (  # noqa: E402
    _VERSION_BY_BLOB,
    Watched,
    _environments,
    due_proposals,
    scan,
)
from controller.proposals.propose import ProposalRequest, propose  # noqa: E402

PIN = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {model}
  annotations:
    sluice.dev/model-name: {model}
    sluice.dev/model-version: "1"
spec:
  predictor:
    model:
      modelFormat:
        name: mlflow
      storageUri: s3://bench/{model}/1
"""
WATCHED = 10
_T = TypeVar("_T")


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def build_repository(root: Path, models: list[str], environments: int) -> Path:
    """A bare remote whose main branch has E overlays with N/E pinned models each."""
    bare, work = root / "remote.git", root / "seed"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=root)
    git("clone", "--quiet", str(bare), str(work), cwd=root)
    for index in range(environments):
        env = f"env{index:02d}"
        overlay = work / "manifests" / "overlays" / env
        overlay.mkdir(parents=True)
        mine = models[index::environments]
        releases = "".join(
            f"  - {{model: {m}, inferenceService: {m}, pin: {m}.yaml, alias: challenger}}\n"
            for m in mine
        )
        (overlay / "sluice.yaml").write_text(
            "apiVersion: sluice.dev/v1alpha1\nkind: Environment\n"
            f"name: {env}\nstorage: {{allowedSchemes: [s3]}}\nreleases:\n{releases}"
        )
        (overlay / "kustomization.yaml").write_text(
            "resources:\n" + "".join(f"  - {m}.yaml\n" for m in mine)
        )
        for model in mine:
            (overlay / f"{model}.yaml").write_text(PIN.format(model=model))
    git("add", "--all", cwd=work)
    git("-c", "user.name=bench", "-c", "user.email=b@x", "commit", "-qm", "seed", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    return bare


def register(registry_uri: str, models: list[str], version: int) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(registry_uri)
    for model in models:
        if version == 1:
            client.create_registered_model(model)
        created = client.create_model_version(model, f"s3://bench/{model}/{version}")
        client.set_registered_model_alias(model, "challenger", created.version)


# -- the baseline: the pass and the proposal as they were before issue #15 -------------------


def forget_parses() -> None:
    """Empty every parse cache: what the old code parsed each time, the baseline parses too."""
    _VERSION_BY_BLOB.clear()
    environment._parse_environment.cache_clear()
    render._document.cache_clear()
    render._VALID.clear()


def old_scan(workspace: GitWorkspace, registry: MlflowRegistry) -> list[ProposalRequest]:
    """Every pin read and parsed, every environment parsed, every registered model paged."""
    forget_parses()
    workspace.sync()
    default = workspace.default_branch()
    by_branch: dict[str, list[Watched]] = {}
    for config in _environments(workspace, default, None):
        for release in config.releases:
            pin = f"manifests/overlays/{config.name}/{release.pin}"
            by_branch.setdefault(config.branch, []).append(
                Watched(config.name, release.model, release.alias, pin)
            )
    pinned: dict[str, int | None] = {}
    for branch, watched in by_branch.items():
        for path, text in workspace.read_many(branch, [w.pin_path for w in watched]).items():
            try:
                pinned[path] = read_release(load_pin(text, source=path)).version if text else None
            except ManifestInvalid:
                pinned[path] = None
    every = [watch for watched in by_branch.values() for watch in watched]
    return due_proposals(every, pinned, registry.all_aliases())


class OldWorkspace(GitWorkspace):
    """The proposal's commit as it was: check the branch out, ``git commit``, push the branch."""

    def _push_once(self, *, branch, base, edit, message, attempt):  # type: ignore[no-untyped-def]
        start = self.remote_sha(branch) or self.remote_sha(base)
        assert start is not None
        self._checkout(branch, start)
        edit(Path(self.repo.working_tree_dir or self.path))
        self.repo.git.add("--all")
        if not self.repo.is_dirty(index=True, working_tree=False, untracked_files=False):
            return CommitOutcome(sha=start, committed=False, attempts=attempt)
        self.repo.git.commit("--quiet", "--no-verify", "-m", message)
        sha = str(self.repo.head.commit.hexsha)
        self._push(branch, f"{branch}:refs/heads/{branch}")
        return CommitOutcome(sha=sha, committed=True, attempts=attempt)


# -- measuring --------------------------------------------------------------------------------


def timed(action: Callable[[], _T]) -> tuple[float, _T]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def best(action: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs (a loaded machine only ever adds time)."""
    return min(timed(action)[0] for _ in range(repeats))


def measure(size: int, environments: int, proposals: int, root: Path) -> dict[str, float]:
    """Seconds per model (per proposal for the proposals) of each path at one size."""
    models = [f"model-{i:04d}" for i in range(size)]
    with start_mlflow(
        backend_store_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifacts_dir=root / "artifacts",
        log_dir=root,
    ) as mlflow:
        print(f"setting up {size} models in {environments} environments …", flush=True)
        register(mlflow.tracking_uri, models, 1)
        remote = build_repository(root, models, environments)
        registry = MlflowRegistry(mlflow.tracking_uri)
        new, old = (
            GitWorkspace(str(remote), root / "cache"),
            OldWorkspace(str(remote), root / "old"),
        )
        new.sync()
        old.sync()

        assert old_scan(old, registry) == []
        assert scan(new, registry) == []
        results = {
            "idle old": best(lambda: old_scan(old, registry)) / size,
            "idle new": best(lambda: scan(new, registry)) / size,
        }
        watched = models[:: max(1, size // WATCHED)][:WATCHED]
        results["registry old"] = best(registry.all_aliases) / WATCHED
        results["registry new"] = best(lambda: registry.aliases_of(watched)) / WATCHED
        client = registry._client
        results["registry per name"] = (
            best(lambda: [client.get_registered_model(name) for name in watched]) / WATCHED
        )
        assert registry.aliases_of(watched) == {m: registry.all_aliases()[m] for m in watched}
        results["registry all old"] = best(registry.all_aliases) / size
        results["registry all new"] = best(lambda: registry.aliases_of(models)) / size

        register(mlflow.tracking_uri, models, 2)
        scan_old, due_old = timed(lambda: old_scan(old, registry))
        scan_new, due = timed(lambda: scan(new, registry))
        assert len(due) == len(due_old) == size
        sample = due[: 2 * proposals]
        spent: dict[str, list[float]] = {"old": [], "new": []}
        for index, request in enumerate(sample):
            kind = "old" if index % 2 == 0 else "new"
            workspace = old if kind == "old" else new
            if kind == "old":
                forget_parses()
            seconds, result = timed(
                lambda: propose(request, registry=registry, workspace=workspace, forge=NoForge())  # noqa: B023
            )
            assert result.status == "proposed", result
            spent[kind].append(seconds)
        results["moved scan old"] = scan_old / size
        results["moved scan new"] = scan_new / size
        results["proposal old"] = statistics.median(spent["old"])
        results["proposal new"] = statistics.median(spent["new"])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[100, 1000])
    parser.add_argument("--environments", type=int, default=10)
    parser.add_argument("--proposals", type=int, default=30, help="of each kind, per size")
    args = parser.parse_args()
    configure_mlflow_http(retries=2, timeout_seconds=30)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    measured: dict[int, dict[str, float]] = {}
    for size in args.sizes:
        root = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
        try:
            measured[size] = measure(size, args.environments, args.proposals, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    small, large = args.sizes
    ms = 1000.0
    rows = [
        ("idle pass, per model", "idle", ms),
        (f"registry scan, per watched model ({WATCHED} watched)", "registry", ms),
        ("registry scan, per watched model (all watched)", "registry all", ms),
        ("alias-moved pass: scan, per model", "moved scan", ms),
        ("alias-moved pass: proposal, each (median)", "proposal", ms),
    ]
    print(f"\n{'':48} {'models':>7} {'baseline':>10} {'now':>10} {'ratio':>7}")
    for label, key, unit in rows:
        for size in args.sizes:
            before, after = measured[size][f"{key} old"], measured[size][f"{key} new"]
            print(
                f"{label:48} {size:7d} {before * unit:8.2f}ms {after * unit:8.2f}ms "
                f"{before / after:6.1f}x"
            )
    for size in args.sizes:
        per_name = measured[size]["registry per name"] * ms
        print(f"{'registry scan, get_registered_model per name':48} {size:7d} {per_name:18.2f}ms")
    pass_old = {s: measured[s]["moved scan old"] + measured[s]["proposal old"] for s in args.sizes}
    pass_new = {s: measured[s]["moved scan new"] + measured[s]["proposal new"] for s in args.sizes}
    print(
        f"summary: per model at {small} -> {large} models: idle pass "
        f"{measured[small]['idle old'] * ms:.2f} -> {measured[large]['idle old'] * ms:.2f} ms "
        f"before, {measured[small]['idle new'] * ms:.2f} -> {measured[large]['idle new'] * ms:.2f}"
        f" ms now; alias-moved pass {pass_old[small] * ms:.0f} -> {pass_old[large] * ms:.0f} ms "
        f"before, {pass_new[small] * ms:.0f} -> {pass_new[large] * ms:.0f} ms now "
        f"({pass_old[large] / pass_new[large]:.1f}x at {large}); registry scan of {WATCHED} "
        f"watched {measured[large]['registry old'] / measured[large]['registry new']:.0f}x "
        f"faster at {large} registered"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
