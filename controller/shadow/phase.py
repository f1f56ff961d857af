"""Whether an InferenceService manifest asks for a shadow phase, read from Git alone.

Before its first canary step a challenger can be judged on a mirrored copy of live requests,
while clients only ever see the primary's answers (issue #8). KServe has no word for that, so
Git says it in two places of the InferenceService (Serverless mode):

- ``spec.predictor.canaryTrafficPercent: 0`` with the challenger's model, so KServe creates
  the new revision with no traffic (tag ``latest``) and the previous one keeps 100 % (``prev``);
- the annotation ``sluice.dev/phase: shadow``, and optionally ``sluice.dev/mirror-percent``
  (the share of requests copied, ``"100"`` by default).

A rollback also writes ``canaryTrafficPercent: 0``, but without the annotation: only the
annotation means "mirror". The same annotation with the value ``smoke`` (:data:`SMOKE_PHASE`)
marks the pre-traffic smoke (:mod:`controller.gates.smoke`): weight 0, nothing mirrored, the
new revision only answers the smoke on its tag route. Whoever mirrors (the local router, a
mesh on a cluster) asks :func:`shadow_request` whether to, and :func:`shadow_revisions` which
revision gets the copies of which one's requests, from KServe's status; this module does no
I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import ConfigError

__all__ = [
    "MIRROR_PERCENT_ANNOTATION",
    "PHASE_ANNOTATION",
    "SHADOW_PHASE",
    "SMOKE_PHASE",
    "ShadowRequest",
    "ShadowRevisions",
    "shadow_request",
    "shadow_revisions",
]

PHASE_ANNOTATION = "sluice.dev/phase"
SHADOW_PHASE = "shadow"
SMOKE_PHASE = "smoke"
MIRROR_PERCENT_ANNOTATION = "sluice.dev/mirror-percent"
_DEFAULT_PERCENT = 100.0


@dataclass(frozen=True)
class ShadowRequest:
    """A shadow phase the manifest asks for: copy ``percent`` % of the primary's requests."""

    percent: float


def shadow_request(isvc: Mapping[str, Any]) -> ShadowRequest | None:
    """The shadow phase ``isvc`` asks for; None unless it is annotated ``sluice.dev/phase:
    shadow`` and its ``spec.predictor.canaryTrafficPercent`` is 0.

    A ``sluice.dev/mirror-percent`` that is not a number in (0, 100] is a :class:`ConfigError`.
    """
    metadata = isvc.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if annotations.get(PHASE_ANNOTATION) != SHADOW_PHASE:
        return None
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    canary = predictor.get("canaryTrafficPercent")
    if isinstance(canary, bool) or not isinstance(canary, int | float) or canary != 0:
        return None
    raw = annotations.get(MIRROR_PERCENT_ANNOTATION)
    if raw is None:
        return ShadowRequest(_DEFAULT_PERCENT)
    percent = _percent(raw)
    if percent is None:
        name = metadata.get("name", "?")
        raise ConfigError(
            f"InferenceService {name}: annotation {MIRROR_PERCENT_ANNOTATION} is {raw!r}, not a"
            f' number in (0, 100]; set it to e.g. "100" (every request) or remove it'
        )
    return ShadowRequest(percent)


@dataclass(frozen=True)
class ShadowRevisions:
    """The revision that gets the copies and the one whose requests are copied."""

    shadow: str
    primary: str


def shadow_revisions(status: Mapping[str, Any]) -> ShadowRevisions | None:
    """The revisions of a shadow phase in a KServe ``status`` (Serverless mode): the latest
    ready revision at 0 % and another revision taking 100 %; None while there are not two.

    While the new revision loads, ``latestRevision`` resolves to the one serving, so there is
    no shadow yet; after a promotion the latest revision takes 100 % and there is none left.
    """
    predictor = (status.get("components") or {}).get("predictor") or {}
    traffic = [t for t in predictor.get("traffic") or [] if isinstance(t, Mapping)]
    totals: dict[str, float] = {}
    for target in traffic:
        name = str(target.get("revisionName") or "")
        totals[name] = totals.get(name, 0) + (target.get("percent") or 0)
    latest = (t for t in traffic if t.get("latestRevision") and not t.get("percent"))
    shadow = str(next(latest, {}).get("revisionName") or "")
    primary = next((name for name, total in totals.items() if name and total == 100), "")
    if not shadow or not primary or shadow == primary:
        return None
    return ShadowRevisions(shadow, primary)


def _percent(raw: object) -> float | None:
    """``raw`` as a percent in (0, 100], or None."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 < value <= 100 else None
