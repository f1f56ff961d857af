"""How long one `sluice serve` pass takes over many watched models, batched against naive.

Sets up a real MLflow server (SQLite) and a bare git repository holding N models spread over
E environments, then times, in one run:

- a pass when nothing changed: Sluice's batched scan (one fetch, one ``cat-file --batch`` for
  every pin, one paged registry search) against the naive pass it replaces (one registry
  request and one ``git show`` per model);
- a pass when every alias moved: the scan plus a proposal per model (commit and push a branch
  each), reported per model so growth can be checked against the smaller size.

Usage: python benchmarks/reconcile_scale.py [--models 1000] [--environments 10]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.backends.git_repo import GitWorkspace  # noqa: E402
from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http  # noqa: E402
from controller.local.services import start_mlflow  # noqa: E402
from controller.proposal_scan import scan  # noqa: E402
from controller.propose import propose  # noqa: E402

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


def naive_pass(
    workspace: GitWorkspace, registry: MlflowRegistry, models: list[str], environments: int
) -> int:
    """The unbatched pass: a registry request and a git read for each model."""
    workspace.sync()
    due = 0
    for index, model in enumerate(models):
        env = f"env{index % environments:02d}"
        ref = registry.version_by_alias(model, "challenger")
        pin = workspace.read("main", f"manifests/overlays/{env}/{model}.yaml") or ""
        if ref is not None and f'model-version: "{ref.version}"' not in pin:
            due += 1
    return due


def timed(action):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--environments", type=int, default=10)
    args = parser.parse_args()
    models = [f"model-{i:04d}" for i in range(args.models)]
    root = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    configure_mlflow_http(retries=2, timeout_seconds=30)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        with start_mlflow(
            backend_store_uri=f"sqlite:///{root / 'mlflow.db'}",
            artifacts_dir=root / "artifacts",
            log_dir=root,
        ) as mlflow:
            print(
                f"setting up {args.models} models in {args.environments} environments …", flush=True
            )
            register(mlflow.tracking_uri, models, 1)
            remote = build_repository(root, models, args.environments)
            registry = MlflowRegistry(mlflow.tracking_uri)
            workspace = GitWorkspace(str(remote), root / "cache")
            workspace.sync()

            batched, due = timed(lambda: scan(workspace, registry))
            assert due == [], due
            naive, naive_due = timed(
                lambda: naive_pass(workspace, registry, models, args.environments)
            )
            assert naive_due == 0
            print(f"nothing changed, {args.models} models:")
            print(f"  batched pass  {batched:8.2f} s   (goal < 5 s)")
            print(f"  naive pass    {naive:8.2f} s")
            print(f"  ratio         {naive / batched:8.1f}x faster batched")

            register(mlflow.tracking_uri, models, 2)
            scanned, due = timed(lambda: scan(workspace, registry))
            assert len(due) == args.models
            half = due[: len(due) // 2]
            first, _ = timed(
                lambda: [
                    propose(r, registry=registry, workspace=workspace, forge=None) for r in half
                ]
            )
            second, _ = timed(
                lambda: [
                    propose(r, registry=registry, workspace=workspace, forge=None)
                    for r in due[len(half) :]
                ]
            )
            total = scanned + first + second
            print(f"all changed, {args.models} models:")
            print(f"  scan          {scanned:8.2f} s")
            print(
                f"  proposals     {first + second:8.2f} s "
                f"({(first + second) / args.models * 1000:.0f} ms each)"
            )
            print(f"  pass total    {total:8.2f} s")
            print(
                f"  growth        {second / max(first, 1e-9):8.2f}x "
                "for the second half vs the first (1.0 = linear)"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
