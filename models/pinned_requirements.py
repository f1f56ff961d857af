"""The pip requirements a logged model declares, pinned to the versions that trained it.

Without ``pip_requirements``, ``mlflow.<flavour>.log_model`` infers them: it loads the model in
a subprocess that records what it imports, about 4 s a model (85 % of ``log_model``), and the
list it writes picks up whatever that process happened to import (``psutil``, ``rich``). A
model whose needs are known declares them: the packages it unpickles with, at exactly the
versions installed where it was trained.
"""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["SKLEARN_MODEL", "pinned"]

#: What a cloudpickled scikit-learn model served through MLflow's pyfunc loader needs.
SKLEARN_MODEL = ("mlflow", "cloudpickle", "numpy", "pandas", "scikit-learn", "scipy")


def pinned(packages: tuple[str, ...] = SKLEARN_MODEL) -> list[str]:
    """``package==version`` for each of ``packages``, as installed in this environment."""
    return [f"{package}=={version(package)}" for package in packages]
