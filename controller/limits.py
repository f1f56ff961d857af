"""Every size and resource limit Sluice puts on what it reads and what it runs, in one place.

Sluice reads files anyone with push access can write (pins and environment files in Git) and
files users export from elsewhere (feedback tables), and it runs ``kubectl kustomize`` on trees
from Git. A hostile or broken file must fail fast with one line, not exhaust the machine: each
kind of file has one documented size cap (README, "Configuration reference"), and a child that
renders a tree runs with an address-space and a time limit.
"""

from __future__ import annotations

from pathlib import Path

from controller.errors import SluiceError

__all__ = [
    "ENVIRONMENT_FILE_MAX_BYTES",
    "FEEDBACK_FILE_MAX_BYTES",
    "KUSTOMIZE_MEMORY_BYTES",
    "KUSTOMIZE_TIMEOUT_SECONDS",
    "MIB",
    "PIN_FILE_MAX_BYTES",
    "REPLAY_PAYLOADS_MAX_BYTES",
    "SETTINGS_FILE_MAX_BYTES",
    "check_file_size",
    "check_size",
    "human_bytes",
]

MIB = 1024 * 1024

#: Settings (``sluice.yaml``, ``--config``), quality gates and drift thresholds: YAML a person
#: writes, a few KiB in practice.
SETTINGS_FILE_MAX_BYTES = 1 * MIB
#: An environment's ``manifests/overlays/ENV/sluice.yaml`` (releases, storage, rollout policy).
ENVIRONMENT_FILE_MAX_BYTES = 1 * MIB
#: A pin (an InferenceService manifest) and every other YAML file of an overlay that kustomize
#: renders; KServe's largest real manifests are a few KiB.
PIN_FILE_MAX_BYTES = 1 * MIB
#: A graph member's replay file (``graphTraffic.replay.payloads``): rows of a few hundred bytes,
#: so 16 MiB holds tens of thousands, far more than a replay cycles through.
REPLAY_PAYLOADS_MAX_BYTES = 16 * MIB
#: A feedback table (``sluice feedback FILE``): ``request_id,label`` rows of about 40 bytes as
#: CSV, so 256 MiB holds some six million labels, far more than a day of late labels.
FEEDBACK_FILE_MAX_BYTES = 256 * MIB

#: Address space of a ``kubectl kustomize`` child (RLIMIT_AS); a render of this repository's
#: overlays peaks under 100 MiB of resident memory.
KUSTOMIZE_MEMORY_BYTES = 2 * 1024 * MIB
#: Wall-clock limit of one ``kubectl kustomize`` run.
KUSTOMIZE_TIMEOUT_SECONDS = 60


def human_bytes(size: int) -> str:
    """``1 MiB``, ``256 MiB``, ``2 GiB``: how limits are named in messages."""
    if size >= 1024 * MIB and size % (1024 * MIB) == 0:
        return f"{size // (1024 * MIB)} GiB"
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    return f"{size} bytes"


def check_size(size: int, limit: int, *, label: str, kind: str, error: type[SluiceError]) -> None:
    """Raise ``error`` naming ``label`` when ``size`` is over the ``kind``'s limit."""
    if size > limit:
        raise error(
            f"{label} is {size} bytes, over the {human_bytes(limit)} limit of a {kind}; "
            "shrink or split it"
        )


def check_file_size(
    path: Path, limit: int, *, label: str, kind: str, error: type[SluiceError]
) -> None:
    """:func:`check_size` of a file on disk (a missing file is the caller's to report)."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    check_size(size, limit, label=label, kind=kind, error=error)
