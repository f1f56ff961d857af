"""One controller acts per release: a lease, taken and renewed by compare-and-swap.

Two controllers on one environment (two ``sluice rollout`` runs, or one beside ``sluice serve
--rollouts``) would otherwise each run the analyses and each commit the same step. Before a
pass analyses or acts, its controller holds the release's lease, as controller-runtime's
leader election holds a ``coordination.k8s.io/v1`` Lease: a record naming the holder and when
it expires, replaced only by a compare-and-swap on the version last read. A controller takes a
lease that is absent, expired or its own; it renews its own at most every ``renew_every``
seconds (a third of the duration by default), so the renewal stays off the hot path; a lease
another holder let expire (it crashed, or was cut off) is taken over once its duration has
passed: 30 s by default, three times the renewal interval. The loser of a race does not act:
it follows, reporting who holds the lease and the commits it sees land, until the rollout ends.
``sluice graph rollout`` holds a lease per InferenceGraph the same way
(:func:`graph_lease_name`), so two walkers of one graph never both commit its steps, and the
recorders of a pull request's approval one per release (:func:`approval_lease_name`), so two
of them never both sign it.

A person's ``sluice rollback`` takes the lease too (:meth:`LeaseKeeper.acquire`), so it never
commits beside a controller that is mid-step. It asks a live holder for the lease by writing
its own id into the record (``requested_by``); the holder, at its next renewal, hands the lease
over instead of renewing it (one compare-and-swap that names the asker as holder), then
follows. A holder that cannot renew meanwhile (in a long analysis) lets it expire instead, so
the wait is at most one lease duration.

Where the lease is kept is a :class:`~controller.ports.LeaseStore`: a ref in the GitOps remote
(:mod:`controller.backends.git_lease`), which every controller that can push a rollout can
also push, a ``coordination.k8s.io/v1`` Lease on a cluster
(:mod:`controller.backends.kubernetes_lease`), or an in-memory one in tests
(:class:`controller.testing.MemoryLeaseStore`). Expiry
is a time written by the holder, so the controllers' clocks must agree to within a few
seconds (NTP), as they must for Kubernetes Leases.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from controller.errors import ConfigError, LeaseHeld

if TYPE_CHECKING:
    from controller.ports import LeaseStore

__all__ = [
    "APPROVAL_LEASE_PREFIX",
    "DEFAULT_LEASE_SECONDS",
    "GRAPH_LEASE_PREFIX",
    "Lease",
    "LeaseKeeper",
    "approval_lease_name",
    "default_holder",
    "graph_lease_name",
    "lease_name",
]

#: How long a lease lasts unrenewed: a dead holder's rollout is taken over after this long.
DEFAULT_LEASE_SECONDS = 30.0
_SWAP_ATTEMPTS = 3


@dataclass(frozen=True)
class Lease:
    """Who acts on a release, since when, and until when unless renewed (epoch seconds)."""

    holder: str
    acquired_at: float
    renewed_at: float
    duration_seconds: float
    #: Another holder that asked for the lease (``sluice rollback``): the holder hands it over
    #: at its next renewal instead of renewing it.
    requested_by: str | None = None

    @property
    def expires_at(self) -> float:
        return self.renewed_at + self.duration_seconds

    def live(self, now: float) -> bool:
        """Whether the lease still binds others at ``now``."""
        return now < self.expires_at

    def to_text(self, name: str) -> str:
        """The lease as a commit message: a subject and ``Sluice-Lease-*`` trailers."""
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires_at))
        return (
            f"sluice lease {name}: {self.holder} until {expires}\n\n"
            f"Sluice-Lease-Holder: {self.holder}\n"
            f"Sluice-Lease-Acquired: {self.acquired_at:.3f}\n"
            f"Sluice-Lease-Renewed: {self.renewed_at:.3f}\n"
            f"Sluice-Lease-Duration: {self.duration_seconds:g}\n"
            + (f"Sluice-Lease-Requested-By: {self.requested_by}\n" if self.requested_by else "")
        )

    @classmethod
    def from_text(cls, text: str) -> Lease | None:
        """The lease a :meth:`to_text` message records; None for anything else (which any
        controller may then replace)."""
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.startswith("Sluice-Lease-"):
                fields[key.removeprefix("Sluice-Lease-")] = value.strip()
        try:
            return cls(
                holder=fields["Holder"],
                acquired_at=float(fields["Acquired"]),
                renewed_at=float(fields["Renewed"]),
                duration_seconds=float(fields["Duration"]),
                requested_by=fields.get("Requested-By") or None,
            )
        except (KeyError, ValueError):
            return None


def default_holder() -> str:
    """This process's holder id: host, pid and a random part (a restarted process is another
    holder, and waits for its predecessor's lease to expire unless it was released)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def lease_name(environment: str, model: str) -> str:
    """The lease of one release (``refs/sluice/leases/<environment>/<model>`` in Git)."""
    return f"{environment}/{model}"


#: What a graph walk's lease name has after its environment, before the graph's name.
GRAPH_LEASE_PREFIX = "-graph-"


def graph_lease_name(environment: str, graph: str) -> str:
    """The lease of one InferenceGraph's walk (``sluice graph rollout``):
    ``refs/sluice/leases/<environment>/-graph-<graph>`` in Git. No release's lease is so named,
    nor is one a directory of it, whatever the graph and model are called: a model's name may
    not begin with ``-`` (:func:`~controller.text.ref_names.validate_model_name`), which a ref
    component may."""
    return f"{environment}/{GRAPH_LEASE_PREFIX}{graph}"


#: What an approval recorder's lease name has after its environment, before the model's name.
APPROVAL_LEASE_PREFIX = "-approval-"


def approval_lease_name(environment: str, model: str) -> str:
    """The lease of recording one release's pull request approvals
    (:mod:`controller.proposals.approval_evidence`): ``refs/sluice/leases/<environment>/
    -approval-<model>`` in Git, apart from the release's own, so a rollout that holds its
    release for hours never holds up an approval. No model's name begins with ``-``, so no
    release's lease is so named (:func:`graph_lease_name`)."""
    return f"{environment}/{APPROVAL_LEASE_PREFIX}{model}"


class LeaseKeeper:
    """Takes, renews and releases leases in ``store`` for one holder."""

    def __init__(
        self,
        store: LeaseStore,
        holder: str | None = None,
        *,
        duration_seconds: float = DEFAULT_LEASE_SECONDS,
        renew_every: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if duration_seconds <= 0:
            raise ConfigError("the lease duration must be positive")
        self.store = store
        self.holder = holder or default_holder()
        self.duration_seconds = duration_seconds
        self.renew_every = duration_seconds / 3 if renew_every is None else renew_every
        self._clock = clock
        self._held: dict[str, Lease] = {}

    def holding(self, name: str) -> bool:
        """Whether this holder took ``name`` and has not seen it lost or released it."""
        lease = self._held.get(name)
        return lease is not None and lease.live(self._clock())

    def hold(self, name: str) -> Lease:
        """The lease in force on ``name``: this holder's (taken or renewed now, or renewed less
        than ``renew_every`` ago, without asking the store), or another holder's live one."""
        now = self._clock()
        mine = self._held.get(name)
        if mine is not None and mine.live(now) and now - mine.renewed_at < self.renew_every:
            return mine
        current: Lease | None = None
        for _ in range(_SWAP_ATTEMPTS):
            found = self.store.read(name)
            current, token = found if found is not None else (None, None)
            if current is not None and current.holder != self.holder and current.live(now):
                self._held.pop(name, None)
                return current
            asker = current.requested_by if current is not None else None
            if current is not None and asker is not None and asker != self.holder:
                # Asked for it (`sluice rollback`): hand it over rather than renew it.
                handed = Lease(asker, now, now, current.duration_seconds)
                if self.store.swap(name, token, handed):
                    self._held.pop(name, None)
                    return handed
                now = self._clock()
                continue
            since = current.acquired_at if current and current.holder == self.holder else now
            lease = Lease(self.holder, since, now, self.duration_seconds)
            if self.store.swap(name, token, lease):
                self._held[name] = lease
                return lease
            now = self._clock()
        self._held.pop(name, None)
        found = self.store.read(name)
        if found is not None:
            return found[0]
        # Swapped away three times and now released: nobody holds it; try again next pass.
        return Lease("nobody", now, now, 0.0)

    def acquire(
        self,
        name: str,
        *,
        wait_seconds: float,
        on_wait: Callable[[Lease], None] = lambda lease: None,
        sleep: Callable[[float], None] = time.sleep,
        poll_seconds: float = 0.5,
    ) -> Lease:
        """Take ``name``, asking a live holder to hand it over (see the module) and waiting up
        to ``wait_seconds`` for it to do so or to let the lease expire; ``on_wait`` is called
        with the lease in force before each wait. :class:`~controller.errors.LeaseHeld` when
        another holder still has it then."""
        deadline = self._clock() + wait_seconds
        while True:
            held = self.hold(name)
            if held.holder == self.holder:
                return held
            now = self._clock()
            if held.live(now) and held.requested_by != self.holder:
                self._ask(name)
            if now >= deadline:
                raise LeaseHeld(
                    f"{held.holder} still holds the lease on {name} after {wait_seconds:g} s "
                    "and did not hand it over; stop that controller (it releases its leases "
                    "when it stops) or wait for its rollout to end, then run again"
                )
            on_wait(held)
            sleep(max(0.0, min(poll_seconds, deadline - now)))

    def _ask(self, name: str) -> None:
        """Write this holder's request into another holder's live lease (a lost swap is fine:
        the next look asks again)."""
        found = self.store.read(name)
        if found is None:
            return
        current, token = found
        now = self._clock()
        if current.holder != self.holder and current.live(now) and current.requested_by is None:
            self.store.swap(name, token, replace(current, requested_by=self.holder))

    def release(self, name: str) -> None:
        """Give ``name`` up (another controller may act at once), if this holder has it."""
        if self._held.pop(name, None) is None:
            return
        found = self.store.read(name)
        if found is not None and found[0].holder == self.holder:
            self.store.swap(name, found[1], None)

    def release_all(self) -> None:
        """Give up every lease this holder has (on exit)."""
        for name in list(self._held):
            self.release(name)
