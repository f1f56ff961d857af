"""Files ``sluice init --repo`` writes into a new GitOps repository, shipped with the package.

``serving-runtime/`` is a copy of the repository's ``manifests/serving-runtime/`` (Sluice's
model server as a KServe ServingRuntime) and ``environments/ENV.yaml`` of its
``manifests/overlays/ENV/sluice.yaml``, so an installed Sluice (a wheel, the controller's image)
can scaffold a repository without this source tree; ``tests/test_init.py`` keeps each copy
identical to its original.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

__all__ = ["environment_file", "serving_runtime_files"]


def serving_runtime_files() -> dict[str, str]:
    """The serving runtime's manifests by file name."""
    folder: Traversable = files(__name__) / "serving-runtime"
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".yaml")
    }


def environment_file(environment: str) -> str | None:
    """This project's ``sluice.yaml`` of ``environment`` (local, staging, production), or None."""
    entry = files(__name__) / "environments" / f"{environment}.yaml"
    return entry.read_text(encoding="utf-8") if entry.is_file() else None
