"""A fresh local stack's MLflow database starts from a migrated copy kept in the user's cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from controller.local.mlflow_store import (
    cache_dir,
    save_template,
    seed_from_template,
    template_path,
)


def _database(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("create table experiments (name text)")
        db.executemany("insert into experiments values (?)", [(r,) for r in rows])
    return path


def _names(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("select name from experiments")]


def test_the_first_fresh_database_becomes_the_template_of_the_next(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _database(tmp_path / "a" / "mlflow.db", ["Default"])
    save_template(first, cache)
    assert template_path(cache).name.startswith("mlflow-")
    assert template_path(cache).is_file()
    second = tmp_path / "b" / "mlflow.db"
    assert seed_from_template(second, cache)
    assert _names(second) == ["Default"]
    assert not list(cache.glob("*.partial"))


def test_an_existing_database_is_never_replaced_and_a_template_never_overwritten(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    save_template(_database(tmp_path / "empty.db", ["Default"]), cache)
    used = _database(tmp_path / "used.db", ["Default", "fraud-detector"])
    assert not seed_from_template(used, cache)
    assert _names(used) == ["Default", "fraud-detector"]
    save_template(used, cache)  # a template exists: the used database is not kept
    assert _names(template_path(cache)) == ["Default"]


def test_without_a_template_or_a_writable_cache_the_server_migrates_as_before(
    tmp_path: Path,
) -> None:
    database = tmp_path / "mlflow.db"
    assert not seed_from_template(database, tmp_path / "no-cache")
    assert not database.exists()
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    save_template(_database(tmp_path / "x.db", ["Default"]), blocked)  # no exception


def test_the_cache_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "sluice"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "sluice"
