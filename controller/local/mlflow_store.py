"""A fresh local stack's MLflow database, copied from a migrated one instead of migrated anew.

``mlflow server`` on an empty SQLite file runs MLflow's fifty-odd schema migrations before it
answers (about 4 s of a 14 s start on 2 busy cores). Every fresh stack of one MLflow version
would run the same migrations to the same empty schema, so the first one keeps a copy in the
user's cache (``$XDG_CACHE_HOME/sluice``, else ``~/.cache/sluice``), named by MLflow's version,
and later fresh stacks start from that copy. The copy holds only the schema and MLflow's
``Default`` experiment, whose artifact location (``mlflow-artifacts:/0``) names no path. A
stack whose database exists is never touched; a copy that cannot be made or read is skipped
(the server migrates as before).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
from importlib.metadata import version
from pathlib import Path

__all__ = ["cache_dir", "save_template", "seed_from_template", "template_path"]

_log = logging.getLogger("sluice.local")


def cache_dir() -> Path:
    """Where Sluice keeps what any checkout may reuse (``$XDG_CACHE_HOME/sluice``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sluice"


def template_path(cache: Path) -> Path:
    """The migrated empty database of this MLflow version in ``cache``."""
    return cache / f"mlflow-{version('mlflow')}-empty.sqlite"


def seed_from_template(database: Path, cache: Path) -> bool:
    """Copy the migrated template to ``database`` if there is none yet; True if copied."""
    template = template_path(cache)
    if database.exists() or not template.is_file():
        return False
    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(template, database)
    except OSError as exc:
        _log.warning("MLflow's database not copied from %s (%s); it migrates anew", template, exc)
        database.unlink(missing_ok=True)
        return False
    return True


def save_template(database: Path, cache: Path) -> None:
    """Keep a consistent copy of the freshly migrated ``database`` (SQLite's online backup, so
    a server writing it is no harm) as the template, unless one exists; best effort."""
    template = template_path(cache)
    if template.exists():
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=cache, suffix=".partial")
    except OSError as exc:
        _log.warning("no template of MLflow's database kept in %s (%s)", cache, exc)
        return
    os.close(handle)
    scratch = Path(name)
    try:
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        target = sqlite3.connect(scratch)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        scratch.replace(template)  # two stacks racing: the last complete copy wins
    except (OSError, sqlite3.Error) as exc:
        _log.warning("no template of MLflow's database kept in %s (%s)", cache, exc)
        scratch.unlink(missing_ok=True)
