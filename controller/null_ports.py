"""The ports' null objects: what stands in for an optional backend nobody configured.

As :class:`~controller.notify.NullNotifier` replaces a notifier nil check (Flagger's ``nop``
notifier), :class:`NoForge` replaces ``forge is None``: ``--forge local`` has no forge, and the
services still hold one and call it.

Why :class:`~controller.ports.PredictionStore` has none: a shadow phase without a prediction
log is judged inconclusive *because* there is no log (:func:`controller.shadow.analysis.
judge_mirrored` says so before anything else); a store that answered no pairs would be judged
on too few samples instead, and one that failed would be an error, so ``None`` keeps saying
what it means there.

:class:`NoGraphReplay` stands for a target whose InferenceGraphs run on KServe's router (a
cluster): that router has no replay, so asking it what a graph would have answered is refused
with the reason, rather than a caller checking for ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from controller.domain import ChangeRequest, PullRequest, PullRequestApprovals
from controller.errors import ConfigError, PermanentError
from controller.target_types import ReplayedAnswer

__all__ = ["NO_FORGE", "NO_GRAPH_REPLAY", "NoForge", "NoGraphReplay"]


class NoForge:
    """The :class:`~controller.ports.Forge` of ``--forge local``: no pull requests.

    A proposal stays a branch that a person merges with git (``sluice propose`` prints the
    command, ``sluice local merge`` runs it), a rollout's statuses and comments go nowhere, no
    branch ever became a pull request, and a retraining runs on this machine instead of in a
    dispatched workflow. Callers that take the pull-request path only where there is one ask
    :attr:`opens_pull_requests`; the two calls that make sense only there refuse.
    """

    #: Proposals are merged by hand, retrainings run here: nothing is opened or dispatched.
    opens_pull_requests = False

    def __repr__(self) -> str:
        return "NoForge()"

    def check_access(self) -> None:
        """Nothing to reach."""

    def open_or_update(self, change: ChangeRequest) -> PullRequest:
        """Refused: there is no pull request to open (merge the branch by hand)."""
        raise PermanentError(
            f"--forge local opens no pull request for {change.branch}: merge it into "
            f"{change.base} by hand (`sluice local merge`), or use --forge github"
        )

    def report_status(self, sha: str, *, context: str, state: str, description: str) -> None:
        """Nowhere to report."""

    def comment(self, number: int, body: str) -> None:
        """Nowhere to comment."""

    def find_pull_request(self, branch: str) -> int | None:
        """No branch ever became a pull request."""
        return None

    def approvals(self, number: int) -> PullRequestApprovals:
        """Refused: there is no pull request to approve."""
        raise PermanentError(
            f"--forge local has no pull request #{number} to read approvals of: a proposal "
            "is merged by hand there, or use --forge github"
        )

    def rewrite_body(self, number: int, rewrite: Callable[[str], str]) -> bool:
        """Refused: there is no pull request whose body to rewrite."""
        raise PermanentError(
            f"--forge local has no pull request #{number} to rewrite: a proposal is a branch "
            "there, or use --forge github"
        )

    def dispatch(self, event_type: str, payload: Mapping[str, object]) -> None:
        """Refused: there is no workflow to dispatch to (a retraining runs here instead)."""
        raise ConfigError(
            f"--forge local has no workflow to send repository_dispatch {event_type!r} to: "
            "retrain with SLUICE_RETRAIN_COMMAND on this machine, or use --forge github"
        )


#: The one :class:`NoForge` (it keeps no state), for defaults.
NO_FORGE = NoForge()


class NoGraphReplay:
    """The :class:`~controller.ports.GraphReplay` of a target without Sluice's graph router (a
    cluster): every replay is refused, with where replays run instead."""

    def __repr__(self) -> str:
        return "NoGraphReplay()"

    def replay(self, graph: str, member: str, answers: Sequence[object]) -> list[ReplayedAnswer]:
        """Refused: KServe's router cannot answer with a member's answer given."""
        raise ConfigError(
            f"InferenceGraph {graph} cannot replay {member}'s answers here: downstream replay "
            "runs on the local target's graph router only (KServe's router has no replay)"
        )


#: The one :class:`NoGraphReplay` (it keeps no state), for defaults.
NO_GRAPH_REPLAY = NoGraphReplay()
