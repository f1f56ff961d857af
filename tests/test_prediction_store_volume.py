"""benchmarks/prediction_store_volume.py runs end to end on a small volume and ends with the
summary line issue #17 asks for: SQLite alone (no server to start), and SQLite beside DuckDB
over Parquet when the bench extra is installed."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
COUNT = r"(~[\d.]+[kM]?|never)"
SUMMARY = re.compile(
    r"ingest rows/s: sqlite [\d,]*\d(?P<more_ingest>.*); at 20k, KPI counts \+ pairs, 2 h: "
    r"sqlite [\d.]+ \+ [\d.]+ s(?P<more_reads>.*); "
    r"(?P<advice>move .*|stay on SQLite: no columnar store read faster)"
)


def _run(*stores: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/prediction_store_volume.py"),
         "--rows", "20000", "--store", *stores, "--repeats", "1", "--event-pairs", "50"],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_benchmark_ends_with_its_summary_line() -> None:
    """20,000 requests into SQLite: the reads are timed at 2k, 6k and 20k, and the last line
    says past which volume to move (which store: none was run)."""
    stdout = _run("sqlite")
    last = stdout.strip().splitlines()[-1]
    found = SUMMARY.fullmatch(last)
    assert found, last
    assert re.fullmatch(
        rf"move to a columnar store past {COUNT} answers in a step's window or {COUNT} "
        r"requests logged \(which one not measured: not run\)",
        found["advice"],
    ), last
    assert "sqlite: 20k requests" in stdout
    assert "sqlite at 2k: KPI counts, 30 min: 2,000 rows" in stdout
    assert "sqlite at 2k: KPI rows, 30 min: 2,000 rows" in stdout


@pytest.mark.skipif(
    importlib.util.find_spec("duckdb") is None, reason="pip install -e '.[bench]' for duckdb"
)
def test_duckdb_over_parquet_reads_what_sqlite_reads_and_the_summary_names_a_store() -> None:
    """The same 20,000 requests exported to Parquet: DuckDB counts the same answers and finds
    the same pairs as SQLite, and the summary names the store to move to (or to stay on)."""
    stdout = _run("sqlite", "duckdb")
    found = SUMMARY.fullmatch(stdout.strip().splitlines()[-1])
    assert found, stdout.strip().splitlines()[-1]
    assert found["more_ingest"].startswith(", duckdb ")
    assert found["more_reads"].startswith("; duckdb ")
    assert re.fullmatch(
        rf"(move the judges' reads to DuckDB over Parquet past {COUNT} answers in a step's "
        rf"window or {COUNT} requests logged|stay on SQLite: no columnar store read faster)",
        found["advice"],
    )
    for query in ("KPI counts, 2 h", "KPI rows, 2 h", "shadow pairs, 2 h"):
        rows = re.findall(rf"  (sqlite|duckdb) at 20k: {query}: ([\d,]+) rows", stdout)
        assert [store for store, _ in rows] == ["sqlite", "duckdb"], query
        assert rows[0][1] == rows[1][1], query
