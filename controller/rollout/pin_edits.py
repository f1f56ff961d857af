"""The pin edits of a rollout, each a compare-and-swap on the version it expects.

A rollout commit is pushed straight to the environment's branch. If someone else pushed in
between (a new proposal merged, a person edited the pin, another controller made the same
decision), :meth:`ReleaseRepository.commit_and_push` re-runs the edit on the new tip; the edit
then compares the whole state it was decided from and the whole state it writes with what the
pin now says. A pin already in the intended state (the weight this edit writes, the restored
version, the finished restore) is left alone, so that the edit changes nothing and nothing is
committed: the action was done already, by this controller's lost push answer or by another
controller, and its reason and annotations stay those of the commit that did it. A pin in any
other state than the one decided from is refused, so a stale decision never overwrites a
newer one. The next pass decides again from what Git now says.

Each edit works in the pin's own KServe mode
(:func:`~controller.manifests.deployment_mode.deployment_mode`), so a rollout commits the same steps
in both: in Serverless mode the weight is ``spec.predictor.canaryTrafficPercent``; in RawDeployment
mode it is the ``trafficPercent`` of the one ``spec.canary`` entry, promotion moves the canary's
``storageUri`` and ``name`` into ``spec.predictor`` (KServe then keeps the canary's Deployment
as the primary, without a restart) and removes ``spec.canary``, and the restore after a
rollback removes ``spec.canary`` (the primary never stopped serving the previous version).

The shadow phase's mirror on a cluster (:mod:`controller.shadow.mirror`) lives beside the pin
in the overlay: :func:`mirror_edit` writes it only while the pin names the version in its
shadow phase, :func:`without_mirror` removes it in the same commit as the pin edit that ends
the phase, and :func:`unmirror_edit` removes one found outside a shadow phase.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from controller.errors import GitConflict, ManifestInvalid
from controller.manifests.deployment_mode import deployment_mode
from controller.manifests.manifest import (
    ANNOTATION_PREFIX,
    ReleasePin,
    apply_release,
    canary_entry,
    dump_pin,
    load_pin,
    read_release,
    remove_canary,
    set_shadow_annotations,
)
from controller.shadow.mirror import read_shadow_mirror, remove_shadow_mirror, write_shadow_mirror
from controller.shadow.phase import shadow_request

__all__ = [
    "ANY",
    "RESTORED_FROM",
    "ROLLBACK_REASON",
    "ROLLBACK_VERDICT",
    "finish_restore_edit",
    "mirror_edit",
    "promote_edit",
    "restore_edit",
    "unmirror_edit",
    "weight_edit",
    "without_mirror",
]


class _Any(enum.Enum):
    """No expectation on the canary weight (edits by hand, tests)."""

    ANY = "any"


#: Pass as ``expect`` to skip the weight check.
ANY = _Any.ANY

ROLLBACK_REASON = f"{ANNOTATION_PREFIX}rollback-reason"
#: ``failed`` (the version was judged worse) or ``aborted`` (no verdict), beside the reason.
ROLLBACK_VERDICT = f"{ANNOTATION_PREFIX}rollback-verdict"
RESTORED_FROM = f"{ANNOTATION_PREFIX}restored-from"
_REASON_LIMIT = 250

PinEdit = Callable[[Path], None]


def _edit(
    path: str,
    version: int,
    change: Callable[[CommentedMap], None],
    *,
    expect: int | _Any | None = ANY,
    target: int | None = None,
    done: Callable[[CommentedMap], bool] | None = None,
) -> PinEdit:
    """A compare-and-swap edit of the pin.

    It changes nothing when the pin is already in the state it writes (``done``, or the
    canary weight at ``target`` when ``expect`` is given): a rerun after a lost push
    answer, or the same decision made by another controller, commits nothing and leaves the
    first commit's annotations alone. Otherwise it refuses unless the pin names
    ``version`` and, with ``expect``, its canary weight is the one decided from.
    """

    def edit(worktree: Path) -> None:
        file = worktree / path
        document = load_pin(file.read_text(encoding="utf-8"), source=path)
        if done is not None and done(document):
            return
        pinned = read_release(document)
        if pinned.version != version:
            raise GitConflict(
                f"{path} now pins v{pinned.version}, not v{version}; "
                "the rollout decides again next pass"
            )
        if expect is not ANY:
            if pinned.canary_percent == target and target != expect:
                return  # done already: the weight this edit writes is there
            if pinned.canary_percent != expect:
                # Another controller moved this canary since this one observed it.
                raise GitConflict(
                    f"{path} now has v{version} at {pinned.canary_percent}%, not the weight "
                    "this decision was made at; the rollout decides again next pass"
                )
        change(document)
        file.write_text(dump_pin(document), encoding="utf-8")

    return edit


def _predictor(document: CommentedMap) -> CommentedMap:
    predictor = document["spec"]["predictor"]
    assert isinstance(predictor, CommentedMap)
    return predictor


def _annotations(document: CommentedMap) -> CommentedMap:
    metadata = document.setdefault("metadata", CommentedMap())
    annotations = metadata.get("annotations")
    if annotations is None:
        annotations = metadata["annotations"] = CommentedMap()
    assert isinstance(annotations, CommentedMap)
    return annotations


def _canary(document: CommentedMap, path: str, version: int) -> CommentedMap:
    """The RawDeployment canary entry; without one there is no earlier version beside v{version}
    to move traffic to (KServe removed the previous primary's Deployment when it promoted)."""
    entry = canary_entry(document)
    if entry is None:
        raise ManifestInvalid(
            f"{path} has no spec.canary: in RawDeployment mode v{version} is the primary and no "
            "earlier version runs beside it to take its traffic; propose the version to serve "
            "instead (sluice propose MODEL --env ENV --version N)"
        )
    return entry


def weight_edit(
    path: str,
    version: int,
    percent: int,
    *,
    reason: str | None = None,
    verdict: str | None = None,
    expect: int | _Any | None = ANY,
) -> PinEdit:
    """Set the canary's weight (0 starts a rollback and records ``reason`` and ``verdict``,
    ``failed`` or ``aborted``, as annotations Argo CD shows): Serverless
    ``canaryTrafficPercent``, RawDeployment ``spec.canary[0].trafficPercent``. Either ends a
    shadow phase: the shadow annotations go."""

    def change(document: CommentedMap) -> None:
        set_shadow_annotations(document, None)
        predictor = _predictor(document)
        if deployment_mode(document) == "RawDeployment":
            _canary(document, path, version)["trafficPercent"] = percent
        elif "canaryTrafficPercent" in predictor:
            predictor["canaryTrafficPercent"] = percent
        else:
            predictor.insert(0, "canaryTrafficPercent", percent)
        if reason is not None:
            text = " ".join(reason.split())
            if len(text) > _REASON_LIMIT:
                text = text[: _REASON_LIMIT - 1] + "…"
            _annotations(document)[ROLLBACK_REASON] = text
        if verdict is not None:
            _annotations(document)[ROLLBACK_VERDICT] = verdict

    return _edit(path, version, change, expect=expect, target=percent)


def promote_edit(path: str, version: int, *, expect: int | _Any | None = ANY) -> PinEdit:
    """Serverless: remove ``canaryTrafficPercent``, the latest ready revision takes all traffic.
    RawDeployment: the canary's predictor becomes ``spec.predictor`` and ``spec.canary`` goes."""

    def change(document: CommentedMap) -> None:
        predictor = _predictor(document)
        if deployment_mode(document) != "RawDeployment":
            predictor.pop("canaryTrafficPercent", None)
            return
        entry = canary_entry(document)
        if entry is None:
            return  # promoted already: the edit is idempotent
        canary = entry.get("predictor") or {}
        name = canary.get("name")
        if name and "name" in predictor:
            predictor["name"] = name
        elif name:
            predictor.insert(0, "name", name)
        storage = (canary.get("model") or {}).get("storageUri")
        predictor.setdefault("model", CommentedMap())["storageUri"] = storage
        remove_canary(document["spec"])

    return _edit(path, version, change, expect=expect, target=None)


def restore_edit(path: str, version: int, pin: ReleasePin) -> PinEdit:
    """Pin the previous version again, without the rollback reason.

    RawDeployment: ``spec.canary`` goes and the untouched primary keeps serving. Serverless:
    the restored spec is a new revision, and a field-less pin would send every request to the
    latest *ready* revision, the bad one, until it loads; so the weight stays at 0 (all traffic
    on the previous rollout) and ``sluice.dev/restored-from`` marks the pin until
    :func:`finish_restore_edit` removes both once the restored revision is ready.
    """

    def change(document: CommentedMap) -> None:
        serverless = deployment_mode(document) != "RawDeployment"
        apply_release(document, pin, source=path)
        annotations = _annotations(document)
        annotations.pop(ROLLBACK_REASON, None)
        annotations.pop(ROLLBACK_VERDICT, None)
        if serverless:
            _predictor(document).insert(0, "canaryTrafficPercent", 0)
            annotations[RESTORED_FROM] = DoubleQuotedScalarString(str(version))

    def restored(document: CommentedMap) -> bool:
        pinned = read_release(document)
        return (pinned.version, pinned.storage_uri) == (pin.version, pin.storage_uri)

    return _edit(path, version, change, done=restored)


def finish_restore_edit(path: str, version: int, restored_from: int) -> PinEdit:
    """The restored revision is ready: drop the weight and the marker, it takes all traffic."""

    def change(document: CommentedMap) -> None:
        marker = _annotations(document).get(RESTORED_FROM)
        if str(marker) != str(restored_from):
            raise GitConflict(f"{path} no longer restores v{version} from v{restored_from}")
        _predictor(document).pop("canaryTrafficPercent", None)
        _annotations(document).pop(RESTORED_FROM, None)

    def finished(document: CommentedMap) -> bool:
        pinned = read_release(document)
        marker = ((document.get("metadata") or {}).get("annotations") or {}).get(RESTORED_FROM)
        return pinned.version == version and marker is None and pinned.canary_percent is None

    return _edit(path, version, change, done=finished)


def _in_shadow(worktree: Path, path: str, version: int) -> bool:
    """Whether the pin names ``version`` in its shadow phase; a :class:`GitConflict` when it
    names another version."""
    document = load_pin((worktree / path).read_text(encoding="utf-8"), source=path)
    pinned = read_release(document)
    if pinned.version != version:
        raise GitConflict(
            f"{path} now pins v{pinned.version}, not v{version}; "
            "the rollout decides again next pass"
        )
    return shadow_request(document) is not None


def mirror_edit(path: str, version: int, overlay: str, document: Mapping[str, Any]) -> PinEdit:
    """Write the shadow VirtualService ``document`` into ``overlay`` and list it there, while
    the pin still names ``version`` in its shadow phase (a stale decision never mirrors after
    the phase ended). Writing the same document again changes nothing."""

    def edit(worktree: Path) -> None:
        if not _in_shadow(worktree, path, version):
            raise GitConflict(
                f"{path} no longer has v{version} in its shadow phase; "
                "the rollout decides again next pass"
            )
        write_shadow_mirror(worktree / overlay, document)

    return edit


def _remove_mirror(directory: Path) -> None:
    """Remove Sluice's shadow VirtualService, if the overlay lists one (else change nothing)."""
    if read_shadow_mirror(directory) is not None:
        remove_shadow_mirror(directory)


def without_mirror(edit: PinEdit, overlay: str) -> PinEdit:
    """``edit``, and Sluice's shadow VirtualService removed from ``overlay`` in the same commit,
    so that Git never holds a mirror outside a shadow phase (without one: just ``edit``)."""

    def edit_and_unmirror(worktree: Path) -> None:
        edit(worktree)
        _remove_mirror(worktree / overlay)

    return edit_and_unmirror


def unmirror_edit(path: str, version: int, overlay: str) -> PinEdit:
    """Remove the shadow VirtualService from ``overlay`` while the pin names ``version`` outside
    a shadow phase (a pin back in one keeps its mirror)."""

    def edit(worktree: Path) -> None:
        if _in_shadow(worktree, path, version):
            raise GitConflict(
                f"{path} has v{version} in its shadow phase again; "
                "the rollout decides again next pass"
            )
        _remove_mirror(worktree / overlay)

    return edit
