"""One ``sluice serve`` pass: which releases have an alias that moved away from their pin?

The scan is the cheap part of the loop, run every interval for every watched model, so it is
batched and remembers what it parsed: one git fetch, one ``git ls-tree`` listing every pin's
blob id (only pins whose content was never seen are read and parsed, so a pass in which
nothing changed parses no YAML), and the aliases of the watched models only, a few names a
registry request (its cost follows the watched set, not the size of the registry). Only
releases whose alias points at a version other than the pinned one go on to
:func:`controller.proposals.propose.propose`, which is idempotent (an already-proposed version
makes no commit and no new pull request).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from controller.errors import ConfigError, ManifestInvalid
from controller.manifests.environment import ENVIRONMENT_FILE, EnvironmentConfig, parse_environment
from controller.manifests.manifest import load_pin, read_release
from controller.ports import AliasIndex, ReleaseRepository
from controller.proposals.propose import ProposalRequest

__all__ = ["ReleaseSnapshot", "Watched", "due_proposals", "scan"]


@dataclass(frozen=True)
class Watched:
    """One release a pass looks at."""

    environment: str
    model: str
    alias: str
    pin_path: str
    #: The environment has ``promotion:``: its versions come by evidence
    #: (:mod:`controller.proposals.auto_propose`), not by following the alias.
    by_evidence: bool = False


def due_proposals(
    watched: Sequence[Watched],
    pinned: Mapping[str, int | None],
    aliases: Mapping[str, Mapping[str, int]],
) -> list[ProposalRequest]:
    """Releases whose alias names a version that is not pinned (pure; ``pinned`` by pin path),
    but for environments whose versions come by evidence."""
    due = []
    for release in watched:
        target = aliases.get(release.model, {}).get(release.alias)
        if release.by_evidence:
            continue
        if target is not None and target != pinned.get(release.pin_path):
            due.append(
                ProposalRequest(
                    model=release.model, environment=release.environment, version=target
                )
            )
    return due


def _environments(
    workspace: ReleaseRepository, branch: str, only: Sequence[str] | None
) -> list[EnvironmentConfig]:
    """Every environment declared on ``branch``, or only those named (each must be declared)."""
    names = list(dict.fromkeys(only)) if only else _overlays(workspace, branch)
    texts = _environment_texts(workspace, branch, names)
    if only and len(texts) < len(names):
        # An overlay without an environment file is no environment; when one was asked for
        # by name, list what is declared (read only here: the usual pass reads no more).
        declared = _environment_texts(workspace, branch, _overlays(workspace, branch))
        unknown = ", ".join(repr(name) for name in names if name not in texts)
        raise ConfigError(
            f"no environment {unknown} in Git (manifests/overlays/ENV/{ENVIRONMENT_FILE}); "
            f"the environments are: {', '.join(declared) or 'none'}"
        )
    return [
        parse_environment(text, source=_environment_path(name), environment=name)
        for name, text in texts.items()
    ]


def _overlays(workspace: ReleaseRepository, branch: str) -> list[str]:
    return workspace.list_dir(branch, "manifests/overlays")


def _environment_path(name: str) -> str:
    return f"manifests/overlays/{name}/{ENVIRONMENT_FILE}"


def _environment_texts(
    workspace: ReleaseRepository, branch: str, names: list[str]
) -> dict[str, str]:
    """The environment file of each of ``names`` that has one, by name, in ``names``' order."""
    texts = workspace.read_many(branch, [_environment_path(name) for name in names])
    return {name: text for name in names if (text := texts[_environment_path(name)]) is not None}


def _read_state(
    workspace: ReleaseRepository, registry: AliasIndex, environments: Sequence[str] | None
) -> tuple[list[Watched], dict[str, int | None], dict[str, dict[str, int]]]:
    workspace.sync()
    default = workspace.default_branch()
    by_branch: dict[str, list[Watched]] = {}
    for config in _environments(workspace, default, environments):
        for release in config.releases:
            pin = f"manifests/overlays/{config.name}/{release.pin}"
            watch = Watched(
                config.name, release.model, release.alias, pin, config.promotion is not None
            )
            by_branch.setdefault(config.branch, []).append(watch)
    pinned: dict[str, int | None] = {}
    for branch, watched in by_branch.items():  # pins are read where each environment syncs from
        pinned.update(_pinned_versions(workspace, branch, [w.pin_path for w in watched]))
    every = [watch for watched in by_branch.values() for watch in watched]
    return every, pinned, registry.aliases_of(sorted({watch.model for watch in every}))


#: The version each pin names, by the pin's blob id: a pin is parsed once per content, so a
#: pass over pins that did not change lists their ids and reads and parses nothing.
_VERSION_BY_BLOB: dict[str, int | None] = {}
_VERSION_CACHE_LIMIT = 100_000
_UNSEEN = -1  # no version number is negative


def _blob_id(text: str) -> str:
    """Git's id of a blob holding ``text`` (what :meth:`ReleaseRepository.blob_ids` lists)."""
    data = text.encode("utf-8")
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _pinned_versions(
    workspace: ReleaseRepository, branch: str, paths: list[str]
) -> dict[str, int | None]:
    """The version each pin on ``branch`` names (None: absent or broken; propose reports a
    broken pin with its own error), reading and parsing only pins not seen before."""
    versions: dict[str, int | None] = {}
    unseen: list[str] = []
    for path, blob in workspace.blob_ids(branch, paths).items():
        known = _VERSION_BY_BLOB.get(blob, _UNSEEN) if blob is not None else None
        if known == _UNSEEN:
            unseen.append(path)
        else:
            versions[path] = known
    if len(_VERSION_BY_BLOB) + len(unseen) > _VERSION_CACHE_LIMIT:
        _VERSION_BY_BLOB.clear()
    for path, text in workspace.read_many(branch, unseen).items():
        version = None
        if text is not None:  # None: gone since it was listed (a sync in between)
            with contextlib.suppress(ManifestInvalid):
                version = read_release(load_pin(text, source=path)).version
            # Keyed by what was read, not by the listing: a sync in between cannot mislabel it.
            _VERSION_BY_BLOB[_blob_id(text)] = version
        versions[path] = version
    return {path: versions[path] for path in paths}


def scan(
    workspace: ReleaseRepository, registry: AliasIndex, *, environments: Sequence[str] | None = None
) -> list[ProposalRequest]:
    """Fetch once, read every pin and every alias in batches, and return the proposals due."""
    return due_proposals(*_read_state(workspace, registry, environments))


class ReleaseSnapshot:
    """The state one pass compares, read in batches and shared by every lookup in the pass.

    :class:`controller.serve.watch.Watcher` asks about one model at a time; answering each from a
    snapshot at most ``max_age_seconds`` old turns a pass over N models into one fetch and a
    few registry requests instead of N round trips.
    """

    def __init__(
        self,
        workspace: ReleaseRepository,
        registry: AliasIndex,
        *,
        environments: Sequence[str] | None = None,
        max_age_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workspace = workspace
        self._registry = registry
        self._environments = environments
        self._max_age = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._taken: float | None = None
        self._watched: list[Watched] = []
        self._pin_of: dict[tuple[str, str], str] = {}
        self._pinned: dict[str, int | None] = {}
        self._aliases: dict[str, dict[str, int]] = {}

    def _fresh(self) -> None:
        with self._lock:
            now = self._clock()
            if self._taken is None or now - self._taken > self._max_age:
                state = _read_state(self._workspace, self._registry, self._environments)
                self._watched, self._pinned, self._aliases = state
                self._pin_of = {(w.environment, w.model): w.pin_path for w in self._watched}
                self._taken = now

    def invalidate(self) -> None:
        """Make the next lookup read afresh (a webhook said something moved just now)."""
        with self._lock:
            self._taken = None

    @property
    def environments(self) -> tuple[str, ...] | None:
        """The environments watched; None for every environment declared in Git."""
        return tuple(self._environments) if self._environments else None

    def watched(self) -> list[Watched]:
        """Every release of the watched environments, as Git says now (:class:`ConfigError`
        when one of them is not declared)."""
        self._fresh()
        return list(self._watched)

    def last_watched(self) -> list[Watched]:
        """The releases as the last read found them, without reading again (empty before the
        first read): for readers beside the watcher that must not add fetches of their own."""
        with self._lock:
            return list(self._watched)

    def alias_version(self, model: str, alias: str) -> int | None:
        """The version an alias points at (None: no such model or alias)."""
        self._fresh()
        return self._aliases.get(model, {}).get(alias)

    def pinned_version(self, environment: str, model: str) -> int | None:
        """The version an environment's pin names (None: nothing pinned yet)."""
        self._fresh()
        path = self._pin_of.get((environment, model))
        return self._pinned.get(path) if path else None
