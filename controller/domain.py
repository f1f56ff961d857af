"""Plain values the core decides over: model versions, proposals, pull requests.

No I/O and no library types: backends build these from MLflow, git and GitHub objects, and the
pure functions of the core (rendering, decisions) read only these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "QUARANTINE_TAG",
    "Approval",
    "ChangeRequest",
    "ModelVersion",
    "PullRequest",
    "PullRequestApprovals",
    "RetrainRequest",
    "Review",
    "RunSummary",
    "current_approvals",
]

#: The version tag a quarantine writes (its reason), with ``.environment`` and ``.at`` beside
#: it: the rollout sets it, proposals, the soak and the evidence gate read it.
QUARANTINE_TAG = "sluice.quarantined"


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, resolved to where its artifacts live."""

    name: str
    version: int
    run_id: str | None
    #: What the registry recorded as the version's source (MLflow 3: ``models:/m-<id>``).
    source: str
    #: Where the artifacts can be downloaded from (``mlflow-artifacts:/…``, ``s3://…``, a path).
    artifact_uri: str
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def quarantined(self) -> bool:
        """Judged worse by a rollout: proposals refuse it until its quarantine is lifted."""
        return QUARANTINE_TAG in self.tags


@dataclass(frozen=True)
class RunSummary:
    """What a reviewer needs from the training run: metrics, params and a link."""

    run_id: str
    url: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChangeRequest:
    """A proposal as a forge sees it: a branch with commits, to merge into a base branch."""

    #: Deterministic from the change (``sluice/ENV/MODEL/vN``), so a rerun finds it again.
    branch: str
    base: str
    title: str
    body: str
    labels: tuple[str, ...]
    #: The commit the forge's status check reports on.
    head_sha: str
    #: Branch-name prefix of proposals this one supersedes (``sluice/ENV/MODEL/``).
    supersedes_prefix: str


@dataclass(frozen=True)
class PullRequest:
    """A pull request that exists on the forge."""

    number: int
    url: str
    branch: str
    state: str
    created: bool
    superseded: tuple[int, ...] = ()


@dataclass(frozen=True)
class Approval:
    """A reviewer's approval of a pull request, as the forge keeps it."""

    login: str
    #: When the review was submitted (seconds since the epoch).
    at: float
    #: The head commit the reviewer approved.
    commit: str


@dataclass(frozen=True)
class Review:
    """One review of a pull request as submitted: ``state`` as GitHub writes it
    (``APPROVED``, ``CHANGES_REQUESTED``, ``COMMENTED``, ``DISMISSED``, ``PENDING``)."""

    login: str
    state: str
    #: The head commit the review was given on.
    commit: str
    #: When it was submitted (seconds since the epoch).
    at: float


#: The review states that decide a reviewer's stand; a comment leaves it as it was.
_DECIDING = frozenset({"APPROVED", "CHANGES_REQUESTED", "DISMISSED"})


def current_approvals(
    reviews: Iterable[Review], *, head_sha: str, author: str
) -> tuple[Approval, ...]:
    """The approvals that stand: each reviewer's latest deciding review (oldest first in
    ``reviews``), when it approves ``head_sha`` and the reviewer is not ``author``."""
    latest: dict[str, Review] = {}
    for review in reviews:
        if review.state in _DECIDING:
            latest[review.login] = review
    return tuple(
        Approval(review.login, review.at, review.commit)
        for review in sorted(latest.values(), key=lambda r: (r.at, r.login))
        if review.state == "APPROVED" and review.commit == head_sha and review.login != author
    )


@dataclass(frozen=True)
class PullRequestApprovals:
    """Who approves a pull request now: each reviewer whose latest review approves its
    current head, other than its author (a later review asking for changes, a dismissal or a
    new head takes an approval back, as GitHub's review rules do)."""

    number: int
    url: str
    #: ``open`` or ``closed``; a merged one is closed and ``merged``.
    state: str
    merged: bool
    head_sha: str
    author: str
    approvals: tuple[Approval, ...] = ()
    #: The branch it merges (a proposal's ``sluice/ENV/MODEL/vN``).
    branch: str = ""

    @property
    def approvers(self) -> tuple[str, ...]:
        """The approving reviewers' logins, sorted."""
        return tuple(sorted({approval.login for approval in self.approvals}))


@dataclass(frozen=True)
class RetrainRequest:
    """Retrain ``model`` for ``environment`` because its live inputs drifted.

    ``features`` are the drifted features (union of the alerts'), ``since`` when the drift was
    first seen (ISO 8601, the earliest ``startsAt`` of the alerts; empty: unknown),
    ``drifted_version`` the version whose inputs drifted and ``alerts`` the alert names.
    """

    model: str
    environment: str
    features: tuple[str, ...] = ()
    since: str = ""
    drifted_version: str = ""
    alerts: tuple[str, ...] = ()
