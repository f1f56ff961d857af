"""``sluice lineage MODEL --env ENV``: read one release's chain and print it, link by link.

:func:`read_lineage_facts` is the only place the chain reads the world, through the ports:
the target (what serves, and the storageUri each revision loaded, when it is a
:class:`~controller.ports.ServedStorage`), Git (the environment's configuration on the
default branch, its pin on the branch it syncs from and the commit that last changed it),
the registry (the pinned version) and the attestation store (the version's envelope and its
artifact's files as served now). The checks are :func:`controller.provenance.lineage.
build_lineage`'s, pure; :func:`run_lineage` wires the backends and prints a table (or JSON).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from securesystemslib.signer import Key

from controller.commands.local_state import local_stack_url
from controller.commands.rollout_backends import TargetKind, build_target
from controller.errors import GateFailed, ModelNotFound, SluiceError
from controller.manifests.manifest import load_pin, read_release
from controller.manifests.storage_uri import map_storage_uri
from controller.ports import (
    AttestationStore,
    ModelRegistry,
    ReleaseRepository,
    ServedStorage,
    Target,
)
from controller.provenance.lineage import (
    Lineage,
    LineageFacts,
    PinFacts,
    ServedRevision,
    build_lineage,
    summary_line,
)
from controller.provenance.policy import read_trusted_keys
from controller.rollout.observe import ReleaseRef, load_release
from controller.settings import Settings
from controller.target_types import TargetObservation

__all__ = ["lineage_of", "lineage_table", "read_lineage_facts", "run_lineage"]

_MARKS = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[yellow]·[/]"}


def _served(target: Target, ref: ReleaseRef) -> tuple[Sequence[ServedRevision] | str, str | None]:
    """The revisions taking traffic, with their storageUri when the target says it (or why the
    target could not be asked), and the commit the environment synced."""
    environment, service = ref.environment.name, ref.release.inference_service
    try:
        observed: TargetObservation = target.observe(environment, service)
        uris = (
            target.served_storage(environment, service) if isinstance(target, ServedStorage) else {}
        )
    except SluiceError as exc:
        return exc.message, None
    if not observed.exists:
        return f"the target has no InferenceService {service} in {environment}", None
    percents: dict[str, int] = {}
    for entry in observed.traffic:
        percents[entry.revision] = percents.get(entry.revision, 0) + entry.percent
    revisions = [
        ServedRevision(name, percent, uris.get(name)) for name, percent in percents.items()
    ]
    return revisions, observed.synced_revision


def read_lineage_facts(
    *,
    workspace: ReleaseRepository,
    registry: ModelRegistry,
    attestations: AttestationStore,
    target: Target,
    environment: str,
    model: str,
    trusted_keys: Sequence[Key] = (),
) -> LineageFacts:
    """Everything the chain is checked from (see the module doc). An unknown environment or
    model is a :class:`~controller.errors.ConfigError` naming the known ones; an unreachable
    registry or remote its :class:`~controller.errors.TransientError`."""
    workspace.sync()
    ref = load_release(workspace, environment, model)
    policy = ref.environment.provenance
    builders: tuple[str, ...] = ()
    if policy is not None and policy.required:
        # The environment's own trust, as its proposals are checked, beside any --key given.
        trusted_keys = [*trusted_keys, *read_trusted_keys(workspace, policy, environment)]
        builders = tuple(policy.builders)
    branch = ref.branch
    text = workspace.read(branch, ref.pin_path)
    pinned = read_release(load_pin(text, source=f"{ref.pin_path}@{branch}")) if text else None
    change = workspace.last_change(branch, ref.pin_path)
    pin = PinFacts(
        path=ref.pin_path,
        branch=branch,
        commit=change.sha if change else None,
        version=pinned.version if pinned else None,
        storage_uri=pinned.storage_uri if pinned else None,
        run_id=pinned.run_id if pinned else None,
    )
    served, synced = _served(target, ref)
    version = mapped = attestation = None
    digests: dict[str, str] = {}
    if pin.version is not None:
        try:
            version = registry.resolve(model, version=pin.version)
        except ModelNotFound:
            version = None
    if version is not None:
        mapped = map_storage_uri(
            version.artifact_uri, ref.environment.storage, environment=environment
        )
        attestation = attestations.attestation(model, version.version)
        digests = attestations.artifact_digests(model, version.version)
    return LineageFacts(
        model=model,
        environment=environment,
        served=served,
        synced_commit=synced,
        pin=pin,
        version=version,
        mapped_uri=mapped,
        attestation=attestation,
        served_digests=digests,
        trusted_keys=tuple(trusted_keys),
        builders=builders,
    )


def lineage_of(
    settings: Settings,
    *,
    model: str,
    environment: str,
    target: TargetKind,
    remote: str | None,
    trusted_keys: Sequence[Key] = (),
) -> Lineage:
    """The release's chain, read through the configured backends (the composition root of
    ``sluice lineage``, and of the line ``make demo`` prints)."""
    from controller.backends.mlflow_attestations import MlflowAttestations
    from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
    from controller.commands.propose import gitops_workspace

    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    tracking_uri = settings.mlflow_tracking_uri
    if target == "local" and "mlflow_tracking_uri" not in settings.model_fields_set:
        tracking_uri = local_stack_url(settings, "mlflow") or tracking_uri
    facts = read_lineage_facts(
        workspace=gitops_workspace(settings, remote),
        registry=MlflowRegistry(tracking_uri),
        attestations=MlflowAttestations(tracking_uri),
        target=build_target(settings, target),
        environment=environment,
        model=model,
        trusted_keys=trusted_keys,
    )
    return build_lineage(facts)


def lineage_table(lineage: Lineage) -> Table:
    """One row per link: its mark, kind, id (digests shortened) and why."""
    version = f" v{lineage.version}" if lineage.version is not None else ""
    table = Table(title=f"Lineage: {lineage.model}{version} in {lineage.environment}")
    for column in ("", "link", "id", "detail"):
        table.add_column(column, overflow="fold")
    for link in lineage.links:
        table.add_row(_MARKS[link.verified], link.kind, _short_id(link.id), link.detail)
    return table


def _short_id(identifier: str) -> str:
    """Digests and run ids cut to 12 hex digits in the table (``--json`` keeps them whole)."""
    prefix = "sha256:" if identifier.startswith("sha256:") else ""
    rest = identifier.removeprefix(prefix)
    if len(rest) > 16 and all(c in "0123456789abcdef" for c in rest):
        return f"{prefix}{rest[:12]}…"
    return identifier


def run_lineage(
    settings: Settings,
    *,
    model: str,
    environment: str,
    target: TargetKind,
    remote: str | None,
    trusted_keys: Sequence[Key],
    as_json: bool,
    console: Console,
) -> None:
    """Print the chain; a broken link is :class:`~controller.errors.GateFailed` (exit 1)
    naming it, after the chain is printed."""
    lineage = lineage_of(
        settings,
        model=model,
        environment=environment,
        target=target,
        remote=remote,
        trusted_keys=trusted_keys,
    )
    if as_json:
        console.print_json(json.dumps(lineage.to_json()))
    else:
        console.print(lineage_table(lineage))
        console.print(summary_line(lineage), soft_wrap=True, markup=False)
    broken = lineage.broken
    if broken is not None:
        raise GateFailed(
            f"{model} in {environment}: the {broken.kind} link is broken: {broken.detail}"
        )
