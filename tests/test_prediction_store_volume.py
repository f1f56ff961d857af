"""benchmarks/prediction_store_volume.py runs end to end on a small volume and ends with the
summary line issue #17 asks for (SQLite only: no server to start)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent

SUMMARY = re.compile(
    r"ingest [\d,]+ rows/s \(postgres\), [\d,]+ rows/s \(sqlite\), events [\d,]+/s; "
    r"KPI read at [\d.]+[kM]?: [\d.]+ s \(postgres\), [\d.]+ s \(sqlite\); "
    r"move to a columnar store past ~([\d.]+[kM]?|never) rows"
)


def test_the_benchmark_ends_with_its_summary_line() -> None:
    """20,000 requests into SQLite: the reads are timed at 2k, 6k and 20k and the last line
    is the summary (the store not run reads "-")."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/prediction_store_volume.py"),
         "--rows", "20000", "--store", "sqlite", "--repeats", "1", "--event-pairs", "50"],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    last = lines[-1].replace("- rows/s (postgres)", "0 rows/s (postgres)")
    last = last.replace("- s (postgres)", "0 s (postgres)")
    assert SUMMARY.fullmatch(last), lines[-1]
    assert "sqlite: 20k requests" in result.stdout
    assert "sqlite at 2k: KPI read, 30 min: 2,000 rows" in result.stdout
