"""The checkout a demo runs in: where its example models live, and how to import them.

Each demo tells the story of one example model under ``models/``, so it runs from the
repository root (``make demo``, ``make demo-ensemble``, ``make demo-recommender``). The console
script does not have the checkout on ``sys.path``, so an example's modules are imported from
it explicitly.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from controller.errors import ConfigError

__all__ = ["example_module", "require_checkout"]


def require_checkout(marker: str, command: str) -> Path:
    """The working directory, when it is a Sluice checkout with ``marker`` (a path under it
    that the demo needs); else a :class:`ConfigError` saying to run ``command`` from the
    repository root."""
    root = Path.cwd()
    if not (root / marker).exists():
        raise ConfigError(
            f"{root} is not a Sluice checkout ({marker} missing); run `{command}` from the "
            "repository root"
        )
    return root


def example_module(repository: Path, name: str) -> Any:
    """The module ``name`` (e.g. ``models.recommender.sessions``) of the checkout at
    ``repository``."""
    if str(repository) not in sys.path:
        sys.path.insert(0, str(repository))
    return importlib.import_module(name)
