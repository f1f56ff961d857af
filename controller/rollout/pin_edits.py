"""The pin edits of a rollout, each a compare-and-swap on the version it expects.

A rollout commit is pushed straight to the environment's branch. If someone else pushed in
between (a new proposal merged, a person edited the pin), :meth:`GitWorkspace.commit_and_push`
re-runs the edit on the new tip; the edit then checks that the pin still names the version
the decision was about and refuses otherwise, so a stale decision never overwrites a newer
one. The next pass decides again from what Git now says.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from controller.errors import GitConflict
from controller.manifest import (
    ANNOTATION_PREFIX,
    ReleasePin,
    apply_release,
    dump_pin,
    load_pin,
    read_release,
)

__all__ = ["ROLLBACK_REASON", "promote_edit", "restore_edit", "weight_edit"]

ROLLBACK_REASON = f"{ANNOTATION_PREFIX}rollback-reason"
_REASON_LIMIT = 250

PinEdit = Callable[[Path], None]


def _edit(path: str, version: int, change: Callable[[CommentedMap], None]) -> PinEdit:
    def edit(worktree: Path) -> None:
        file = worktree / path
        document = load_pin(file.read_text(encoding="utf-8"), source=path)
        pinned = read_release(document).version
        if pinned != version:
            raise GitConflict(
                f"{path} now pins v{pinned}, not v{version}; the rollout decides again next pass"
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


def weight_edit(path: str, version: int, percent: int, *, reason: str | None = None) -> PinEdit:
    """Set ``canaryTrafficPercent`` (0 starts a rollback and records ``reason``)."""

    def change(document: CommentedMap) -> None:
        predictor = _predictor(document)
        if "canaryTrafficPercent" in predictor:
            predictor["canaryTrafficPercent"] = percent
        else:
            predictor.insert(0, "canaryTrafficPercent", percent)
        if reason is not None:
            text = " ".join(reason.split())
            if len(text) > _REASON_LIMIT:
                text = text[: _REASON_LIMIT - 1] + "…"
            _annotations(document)[ROLLBACK_REASON] = text

    return _edit(path, version, change)


def promote_edit(path: str, version: int) -> PinEdit:
    """Remove ``canaryTrafficPercent``: the latest ready revision takes all traffic."""

    def change(document: CommentedMap) -> None:
        _predictor(document).pop("canaryTrafficPercent", None)

    return _edit(path, version, change)


def restore_edit(path: str, version: int, pin: ReleasePin) -> PinEdit:
    """Pin the previous version again (no canary field, no rollback reason)."""

    def change(document: CommentedMap) -> None:
        apply_release(document, pin, source=path)
        _annotations(document).pop(ROLLBACK_REASON, None)

    return _edit(path, version, change)
