"""Renders remembered by the files they were rendered from, so one tree is rendered once.

``kubectl kustomize`` costs about 0.1 s of CPU a render, and one process renders the same
tree more than once: a rollout validates the overlay of each commit before pushing it and the
local target renders that commit again when it syncs it; a pass that died after its edit (or
lost its push answer) runs the edit again on the same tip. A render depends only on the
files kustomize reads, so it is remembered under a digest of them (and of the ``kubectl``
that ran): any changed byte is a new key, and a new tree is always rendered and validated.

Which files: the overlay's directory and every directory its kustomization names (``- ../../
base``), transitively, each with everything under it (kustomize loads files only from within a
kustomization's own directory), and every file they name. A render is not remembered when it
could read anything else: a list entry that is not a file or directory inside the tree (a
remote base such as ``github.com/org/repo?ref=v1``, a path out of the tree, a ``KEY=value``
literal, to be safe), a list written inline (``[a, b]``), a ``://`` anywhere in a
kustomization, a symbolic link out of the tree or to a directory, or more than
:data:`MAX_FILES` files or :data:`MAX_BYTES` bytes to read.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

__all__ = ["MAX_BYTES", "MAX_FILES", "forget_all", "remember", "remembered", "tree_key"]

#: Past these, hashing the tree could cost more than rendering it: nothing is remembered.
MAX_FILES = 20_000
MAX_BYTES = 64 * 1024 * 1024
#: Renders kept (a 1,000-service overlay is a few MB parsed).
_KEPT = 16
_KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")
#: A list entry that is a bare value (``- ../../base``), not a mapping (``- path: x``).
_FLOW_LIST = re.compile(r"^[^#\n]*:\s*\[", re.MULTILINE)
_PLAIN_ITEM = re.compile(r"^\s*-\s+(['\"]?)([^\s'\":#][^\s'\"#]*)\1\s*(?:#.*)?$", re.MULTILINE)

_RENDERS: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
_LOCK = threading.Lock()


class _Unsafe(Exception):
    """The render could read something the digest does not cover."""


def tree_key(tree: Path, overlay: Path, kubectl: str) -> str | None:
    """The digest of every file rendering ``overlay`` (a directory inside ``tree``) can read,
    or None when that cannot be known (see the module's docstring)."""
    try:
        root = tree.resolve()
        start = overlay.resolve()
        start.relative_to(root)
        directories, named = _reachable(root, start)
        digest = hashlib.sha256(f"{kubectl}\0{start.relative_to(root)}\0".encode())
        _digest_files(root, directories, named, digest)
    except (_Unsafe, ValueError, OSError):
        return None
    return digest.hexdigest()


def _reachable(root: Path, start: Path) -> tuple[list[Path], set[Path]]:
    """The overlay's directory and those its kustomizations name, transitively, and the
    files they name."""
    seen: list[Path] = []
    named: set[Path] = set()
    pending = [start]
    while pending:
        directory = pending.pop()
        if directory in seen:
            continue
        seen.append(directory)
        for name in _KUSTOMIZATIONS:
            file = directory / name
            if not file.is_file():
                continue
            text = file.read_text(encoding="utf-8", errors="replace")
            if "://" in text or _FLOW_LIST.search(text):
                raise _Unsafe  # a URL, or a list this reading does not follow
            for match in _PLAIN_ITEM.finditer(text):
                target = (directory / match.group(2)).resolve()
                target.relative_to(root)  # ValueError: out of the tree
                if target.is_dir():
                    pending.append(target)
                elif target.is_file():
                    named.add(target)
                else:
                    raise _Unsafe  # remote, or not a file at all
    return seen, named


def _digest_files(root: Path, directories: list[Path], named: set[Path], digest: Any) -> None:
    """Every file under each of ``directories`` and each of ``named`` (each once), path and
    bytes, into ``digest``."""
    files = set(named)
    for directory in directories:
        for parent, names, found in os.walk(directory):
            names[:] = [name for name in names if name != ".git"]
            if any((Path(parent) / name).is_symlink() for name in names):
                raise _Unsafe  # os.walk would not look inside; kustomize would
            for name in found:
                files.add(Path(parent) / name)
    if len(files) > MAX_FILES:
        raise _Unsafe
    total = 0
    for file in sorted(files):
        if file.is_symlink():
            file.resolve().relative_to(root)  # ValueError: a link out of the tree
        data = file.read_bytes()
        total += len(data)
        if total > MAX_BYTES:
            raise _Unsafe
        digest.update(f"{file.relative_to(root)}\0{len(data)}\0".encode())
        digest.update(data)


def remembered(key: str | None) -> list[dict[str, Any]] | None:
    """The documents rendered under ``key`` (to be copied before use), if kept."""
    if key is None:
        return None
    with _LOCK:
        documents = _RENDERS.get(key)
        if documents is not None:
            _RENDERS.move_to_end(key)
        return documents


def remember(key: str | None, documents: list[dict[str, Any]]) -> None:
    """Keep a successful render's documents under ``key`` (not copied: never mutate them)."""
    if key is None:
        return
    with _LOCK:
        _RENDERS[key] = documents
        while len(_RENDERS) > _KEPT:
            _RENDERS.popitem(last=False)


def forget_all() -> None:
    """Drop every remembered render (a test that counts renders starts from none)."""
    with _LOCK:
        _RENDERS.clear()
