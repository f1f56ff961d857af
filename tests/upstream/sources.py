"""The upstream files vendored beside this script: checked offline, downloaded again on demand.

``SOURCES.md`` here is the data: each row of its "Vendored files" table names a file of this
directory, the GitHub repository, path and commit it was copied from, its licence and its
SHA-256. This script reads that table (there is no second copy of it) and only the standard
library, so it runs before ``make setup``::

    python3 tests/upstream/sources.py check    # offline; `make upstream-check`
    python3 tests/upstream/sources.py refresh  # from GitHub; `make upstream-refresh`

``check`` fails on a listed file that is missing or whose SHA-256 differs, and on a file here
that the table does not list. ``refresh`` downloads every listed file from
``https://raw.githubusercontent.com/<repository>/<commit>/<path>`` and writes them only when
every download matches its SHA-256, so a failed refresh leaves the directory as it was. To move
to a newer upstream commit, change the commit in SOURCES.md and run ``refresh --rehash``: it
writes the downloaded files and their new SHA-256 into the table (review both in the diff, then
regenerate the derived copies SOURCES.md lists).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SOURCES_MD",
    "UPSTREAM",
    "Source",
    "check",
    "download",
    "load_sources",
    "main",
    "refresh",
]

UPSTREAM = Path(__file__).resolve().parent
SOURCES_MD = UPSTREAM / "SOURCES.md"
#: Files of this directory that are Sluice's own, not vendored.
OWN_FILES = frozenset({"SOURCES.md", "sources.py", "__init__.py", ".gitattributes"})
RAW_URL = "https://raw.githubusercontent.com/{repository}/{commit}/{path}"

_ROW = re.compile(
    r"^\|\s*`?(?P<local>[^|`\s]+)`?\s*"
    r"\|\s*(?P<repository>[\w.-]+/[\w.-]+)\s*"
    r"\|\s*`?(?P<path>[^|`\s]+)`?\s*"
    r"\|\s*(?P<commit>[0-9a-f]{40})\s*"
    r"\|\s*(?P<licence>[^|]+?)\s*"
    r"\|\s*(?P<sha256>[0-9a-f]{64})\s*\|$"
)


@dataclass(frozen=True)
class Source:
    """One vendored file: where it lives here and where it came from."""

    local: str  # relative to tests/upstream, e.g. kserve/config/crd/full/...
    repository: str  # owner/name on GitHub
    path: str  # in the repository
    commit: str
    licence: str
    sha256: str

    @property
    def url(self) -> str:
        """The file's raw content at its commit."""
        return RAW_URL.format(repository=self.repository, commit=self.commit, path=self.path)

    @property
    def expected_local(self) -> str:
        """The upstream path under a directory named after the repository."""
        return f"{self.repository.partition('/')[2]}/{self.path}"


def load_sources(text: str | None = None) -> list[Source]:
    """The rows of SOURCES.md's table of vendored files (``text`` instead of the file)."""
    if text is None:
        text = SOURCES_MD.read_text(encoding="utf-8")
    return [
        Source(**match.groupdict())
        for line in text.splitlines()
        if (match := _ROW.match(line.strip()))
    ]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(root: Path = UPSTREAM, sources: Sequence[Source] | None = None) -> list[str]:
    """Every way the files under ``root`` differ from the table; empty when they all match."""
    sources = load_sources() if sources is None else sources
    problems = [] if sources else [f"{SOURCES_MD}: no vendored file listed"]
    listed: set[str] = set()
    for source in sources:
        if source.local in listed:
            problems.append(f"{source.local}: listed twice")
        listed.add(source.local)
        if source.local != source.expected_local:
            problems.append(f"{source.local}: should be {source.expected_local} (upstream path)")
        path = root / source.local
        if not path.is_file():
            problems.append(f"{source.local}: missing (make upstream-refresh downloads it)")
        elif (actual := _sha256(path.read_bytes())) != source.sha256:
            problems.append(f"{source.local}: SHA-256 {actual}, SOURCES.md lists {source.sha256}")
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative not in OWN_FILES | listed and "__pycache__" not in relative:
            problems.append(f"{relative}: not listed in SOURCES.md")
    return problems


def download(url: str) -> bytes:
    """The body of ``url`` (an https address of raw.githubusercontent.com)."""
    if not url.startswith("https://raw.githubusercontent.com/"):
        raise ValueError(f"not a raw GitHub address: {url}")
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https, checked above)
        body: bytes = response.read()
    return body


def refresh(
    root: Path = UPSTREAM,
    sources: Sequence[Source] | None = None,
    *,
    rehash: bool = False,
    fetch: Callable[[str], bytes] = download,
    sources_md: Path = SOURCES_MD,
) -> list[str]:
    """Download every listed file at its commit and write them under ``root``.

    Nothing is written unless every download matches its SHA-256; with ``rehash`` the downloads
    are written whatever their hash, and the new hashes replace the old ones in ``sources_md``.
    Returns the problems (a failed download, mismatches), empty when the files were written.
    """
    sources = load_sources(sources_md.read_text(encoding="utf-8")) if sources is None else sources
    bodies: dict[Source, bytes] = {}
    for source in sources:
        try:
            bodies[source] = fetch(source.url)
        except OSError as error:  # urllib's URLError and HTTPError are OSErrors
            return [f"{source.local}: cannot download {source.url}: {error}"]
    changed = {s: _sha256(body) for s, body in bodies.items() if _sha256(body) != s.sha256}
    if changed and not rehash:
        return [
            f"{s.local}: {s.url} has SHA-256 {digest}, SOURCES.md lists {s.sha256}"
            for s, digest in changed.items()
        ]
    for source, body in bodies.items():
        path = root / source.local
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    if changed:
        text = sources_md.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        for index, line in enumerate(lines):
            match = _ROW.match(line.strip())
            if match and (source := Source(**match.groupdict())) in changed:
                lines[index] = line.replace(source.sha256, changed[source])
        sources_md.write_text("".join(lines), encoding="utf-8")
    return []


def main(argv: Sequence[str] | None = None) -> int:
    """``check`` or ``refresh [--rehash]``; exit status 1 with the problems on stderr."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="verify every vendored file's SHA-256 (offline)")
    refresher = commands.add_parser("refresh", help="download every file again at its commit")
    refresher.add_argument(
        "--rehash", action="store_true", help="accept new contents and write their SHA-256"
    )
    args = parser.parse_args(argv)
    if args.command == "check":
        problems = check()
        done = f"{len(load_sources())} upstream files match tests/upstream/SOURCES.md"
    else:
        problems = refresh(rehash=args.rehash) or check()
        done = f"{len(load_sources())} upstream files downloaded and verified"
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
