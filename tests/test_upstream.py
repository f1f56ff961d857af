"""The vendored upstream files are the ones SOURCES.md lists, byte for byte, and can be fetched.

No network: refresh is run with a fake download, so what is tested is the table, the URLs and
the rule that nothing is written unless every file matches its SHA-256.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import pytest
from upstream.sources import SOURCES_MD, UPSTREAM, check, download, load_sources, refresh

ROOT = UPSTREAM.parents[1]
ROW = (
    "| kserve/LICENSE | kserve/kserve | LICENSE | {commit} | Apache-2.0 | {sha256} |\n"
    "| argo-cd/a/b.yaml | argoproj/argo-cd | a/b.yaml | {commit} | Apache-2.0 | {other} |\n"
)
COMMIT = "aaac4e294dae2c7b1aa1886447793f3aa1c30912"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_vendored_file_matches_its_sha256() -> None:
    """Each file of tests/upstream is listed in SOURCES.md and has the SHA-256 listed there."""
    assert check() == []


def test_table_lists_what_the_tests_read() -> None:
    """The CRDs and Argo CD's health check are listed, with both repositories' licences."""
    listed = {source.local for source in load_sources()}
    assert {
        "kserve/LICENSE",
        "kserve/config/crd/full/serving.kserve.io_inferenceservices.yaml",
        "kserve/config/crd/full/serving.kserve.io_inferencegraphs.yaml",
        "argo-cd/LICENSE",
        "argo-cd/manifests/crds/application-crd.yaml",
        "argo-cd/manifests/crds/applicationset-crd.yaml",
        "argo-cd/resource_customizations/serving.kserve.io/InferenceService/health.lua",
        "argo-cd/resource_customizations/serving.kserve.io/InferenceService/health_test.yaml",
    } <= listed
    assert {source.licence for source in load_sources()} == {"Apache-2.0"}


def test_derived_copies_named_in_sources_exist() -> None:
    """Every product file SOURCES.md names as a derived copy is in the repository."""
    derived = SOURCES_MD.read_text(encoding="utf-8").partition("## Derived copies")[2]
    named = re.findall(r"^\| `(controller/[^`]+)`", derived, flags=re.MULTILINE)
    assert len(named) == 4
    assert [name for name in named if not (ROOT / name).is_file()] == []


def test_download_address_is_the_raw_file_at_its_commit() -> None:
    """A row's URL is raw.githubusercontent.com/<repository>/<commit>/<path>."""
    (source,) = (s for s in load_sources() if s.local.endswith("application-crd.yaml"))
    assert source.url == (
        "https://raw.githubusercontent.com/argoproj/argo-cd/"
        "37ee0097cf851bc2dd7665fc081bbce61a7e836e/manifests/crds/application-crd.yaml"
    )


def test_check_names_changed_missing_and_unlisted_files(tmp_path: Path) -> None:
    """A changed, a missing and an unlisted file are each reported by path."""
    sources = load_sources(ROW.format(commit=COMMIT, sha256=digest(b"licence"), other="0" * 64))
    (tmp_path / "kserve").mkdir()
    (tmp_path / "kserve/LICENSE").write_bytes(b"licence, edited")
    (tmp_path / "kserve/extra.yaml").write_bytes(b"")
    problems = check(tmp_path, sources)
    assert [problem.partition(":")[0] for problem in problems] == [
        "kserve/LICENSE",
        "argo-cd/a/b.yaml",
        "kserve/extra.yaml",
    ]


def test_check_refuses_a_file_away_from_its_upstream_path(tmp_path: Path) -> None:
    """The local path is the upstream path under the repository's name."""
    (source,) = load_sources(
        f"| kserve/LICENSE.txt | kserve/kserve | LICENSE | {COMMIT} | Apache-2.0 | {'0' * 64} |"
    )
    assert any("should be kserve/LICENSE" in problem for problem in check(tmp_path, [source]))


def test_refresh_writes_files_only_when_every_hash_matches(tmp_path: Path) -> None:
    """One mismatching download: nothing written; all matching: all written, at their paths."""
    bodies = {"LICENSE": b"licence", "a/b.yaml": b"kind: X\n"}
    table = tmp_path / "SOURCES.md"
    table.write_text(ROW.format(commit=COMMIT, sha256=digest(b"licence"), other="0" * 64))
    requested: list[str] = []

    def fetch(url: str) -> bytes:
        requested.append(url)
        return bodies[url.rpartition(f"/{COMMIT}/")[2]]

    problems = refresh(tmp_path, fetch=fetch, sources_md=table)
    assert [problem.partition(":")[0] for problem in problems] == ["argo-cd/a/b.yaml"]
    assert not (tmp_path / "kserve").exists()
    assert requested == [
        f"https://raw.githubusercontent.com/kserve/kserve/{COMMIT}/LICENSE",
        f"https://raw.githubusercontent.com/argoproj/argo-cd/{COMMIT}/a/b.yaml",
    ]

    table.write_text(
        ROW.format(commit=COMMIT, sha256=digest(b"licence"), other=digest(b"kind: X\n"))
    )
    assert refresh(tmp_path, fetch=fetch, sources_md=table) == []
    assert (tmp_path / "kserve/LICENSE").read_bytes() == b"licence"
    assert (tmp_path / "argo-cd/a/b.yaml").read_bytes() == b"kind: X\n"


def test_refresh_reports_a_failed_download_and_writes_nothing(tmp_path: Path) -> None:
    """No network (or a 404): one line naming the file and the address, no traceback."""
    table = tmp_path / "SOURCES.md"
    table.write_text(ROW.format(commit=COMMIT, sha256="1" * 64, other="2" * 64))

    def fetch(url: str) -> bytes:
        raise URLError("Name or service not known")

    (problem,) = refresh(tmp_path, fetch=fetch, sources_md=table)
    assert problem == (
        f"kserve/LICENSE: cannot download https://raw.githubusercontent.com/kserve/kserve/{COMMIT}"
        "/LICENSE: <urlopen error Name or service not known>"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["SOURCES.md"]


def test_refresh_rehash_takes_new_contents_and_records_their_hashes(tmp_path: Path) -> None:
    """With rehash a changed download is written and its SHA-256 replaces the old in the table."""
    table = tmp_path / "SOURCES.md"
    table.write_text("# Upstream\n\n" + ROW.format(commit=COMMIT, sha256="1" * 64, other="2" * 64))
    assert refresh(tmp_path, fetch=lambda url: url.encode(), rehash=True, sources_md=table) == []
    rows = load_sources(table.read_text())
    assert [row.sha256 for row in rows] == [digest(row.url.encode()) for row in rows]
    assert table.read_text().startswith("# Upstream\n\n")
    assert check(tmp_path, rows) == []


def test_refresh_downloads_only_from_raw_github() -> None:
    """The downloader refuses any other address (no request is made)."""
    with pytest.raises(ValueError, match="not a raw GitHub address"):
        download("http://raw.githubusercontent.com/kserve/kserve/main/LICENSE")


def test_the_script_runs_on_its_own() -> None:
    """`make upstream-check` runs the file as a script, outside pytest and its sys.path."""
    result = subprocess.run(
        [sys.executable, "-I", str(UPSTREAM / "sources.py"), "check"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout == f"{len(load_sources())} upstream files match tests/upstream/SOURCES.md\n"
    )
