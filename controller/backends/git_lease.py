"""Leases as refs in the GitOps remote: ``refs/sluice/leases/<environment>/<model>``.

Every controller that can push a rollout commit can push this ref too, so the lease needs
nothing beside the remote (no cluster, no shared disk). The ref points at a parentless commit
with an empty tree whose message records the lease (:meth:`controller.lease.Lease.to_text`);
taking, renewing and releasing it is one ``git push --force-with-lease=<ref>:<expected old
commit>``, a compare-and-swap the remote decides. The ref is outside ``refs/heads``: Argo CD
never sees it, clones do not fetch it, and branch protection does not apply to it. A forge must
accept pushes of custom refs (GitHub and GitLab do).
"""

from __future__ import annotations

from controller.backends.git_repo import GitWorkspace
from controller.lease import Lease

__all__ = ["LEASE_REF_PREFIX", "GitLeaseStore"]

LEASE_REF_PREFIX = "refs/sluice/leases/"


class GitLeaseStore:
    """A :class:`~controller.ports.LeaseStore` kept in the remote of ``workspace``."""

    def __init__(self, workspace: GitWorkspace) -> None:
        self.workspace = workspace

    def read(self, name: str) -> tuple[Lease, str] | None:
        found = self.workspace.fetch_ref(LEASE_REF_PREFIX + name)
        if found is None:
            return None
        sha, message = found
        # A ref whose message is not a lease (written by hand) is an expired lease: replaceable.
        return Lease.from_text(message) or Lease("unknown", 0.0, 0.0, 0.0), sha

    def swap(self, name: str, expected: str | None, lease: Lease | None) -> bool:
        message = None if lease is None else lease.to_text(name)
        return self.workspace.swap_ref(LEASE_REF_PREFIX + name, expected, message)
