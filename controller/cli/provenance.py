"""``sluice provenance keygen`` and ``verify``: the signing keypair, and checking a version.

A table of commands only, merged into :data:`controller.cli.app.app` as the ``provenance``
group; what is recorded lives in :mod:`controller.training`, what is checked in
:mod:`controller.provenance.verify`. ``verify`` exits 0 (verified), 1 (a link failed: one
line says which) or 2 (bad input: an unreadable key file, an unknown version).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from controller.cli.options import current_settings
from controller.errors import ConfigError, GateFailed

__all__ = ["provenance_app"]

provenance_app = typer.Typer(
    help="Signed provenance of model versions: write a signing keypair, verify a version.",
    no_args_is_help=True,
)


def _write(path: Path, content: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        descriptor = os.open(path, flags, mode)
    except FileExistsError:
        raise ConfigError(f"{path} exists; remove it or choose another --out") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path} ({exc.strerror}); fix --out") from None
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(content)


@provenance_app.command("keygen")
def keygen(
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write NAME.key and NAME.pub into.")
    ] = Path(),
    name: Annotated[str, typer.Option("--name", help="File name stem.")] = "sluice-signing",
) -> None:
    """Write an Ed25519 keypair: NAME.key (private, mode 0600: the CI secret
    SLUICE_SIGNING_KEY) and NAME.pub (public: commit it to the GitOps repository)."""
    from controller.provenance.signing import generate_keypair

    out.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_keypair()
    private_path, public_path = out / f"{name}.key", out / f"{name}.pub"
    _write(private_path, private_pem, 0o600)
    _write(public_path, public_pem, 0o644)
    typer.echo(
        f"wrote {private_path} (private: store it as the CI secret SLUICE_SIGNING_KEY, "
        f"never commit it) and {public_path} (public: commit it beside the environment)"
    )


@provenance_app.command("verify")
def verify(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model.")],
    version: Annotated[int, typer.Option("--version", help="Version to verify.", min=1)],
    keys: Annotated[
        list[Path],
        typer.Option("--key", help="Trusted public key (PEM); repeat for several."),
    ],
    builders: Annotated[
        list[str] | None,
        typer.Option(
            "--builder",
            help="Allowed builder id or fnmatch pattern (repeatable; default: any).",
        ),
    ] = None,
) -> None:
    """Verify a version: a trusted key signed its attestation, an allowed builder built it,
    and every file the registry serves now matches the signed digests."""
    from controller.backends.mlflow_attestations import MlflowAttestations
    from controller.backends.mlflow_registry import configure_mlflow_http
    from controller.provenance.signing import load_key_options
    from controller.provenance.verify import verify_version

    trusted = load_key_options(keys)
    settings = current_settings(ctx)
    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    result = verify_version(
        MlflowAttestations(settings.mlflow_tracking_uri),
        model,
        version,
        trusted_keys=trusted,
        builders=list(builders or []),
    )
    line = result.line(f"{model} v{version}")
    if not result.verified:
        raise GateFailed(line)
    typer.echo(line)
