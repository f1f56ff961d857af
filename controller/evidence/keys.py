"""The controller keys each environment's evidence is checked against, read from Git.

An environment's ``evidence.controllerKeys`` names public keys committed to the GitOps
repository; they are read from the default branch (as provenance's ``trustedKeys`` are), so a
change of who may sign an environment's evidence is reviewed like any other change, and a
proposal branch cannot bring its own key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from controller.errors import ConfigError
from controller.provenance.signing import load_public_key

if TYPE_CHECKING:
    from securesystemslib.signer import Key

    from controller.manifests.environment import EnvironmentConfig
    from controller.ports import ReleaseRepository

__all__ = ["read_controller_keys"]


def read_controller_keys(
    workspace: ReleaseRepository, environments: Iterable[EnvironmentConfig]
) -> dict[str, list[Key]]:
    """Each environment's controller keys as the remote's default branch holds them (an
    environment without ``evidence:`` trusts none); a :class:`ConfigError` naming the file
    when one is missing or is not a public key."""
    default = workspace.default_branch()
    keys: dict[str, list[Key]] = {}
    for environment in environments:
        paths = environment.evidence.controller_keys if environment.evidence else ()
        keys[environment.name] = []
        for path in paths:
            text = workspace.read(default, path)
            if text is None:
                raise ConfigError(
                    f"{environment.name}'s evidence.controllerKeys names {path}, which is not "
                    f"on {default}: commit the controller's public key there (`sluice "
                    "provenance keygen` writes a keypair)"
                )
            keys[environment.name].append(
                load_public_key(text.encode("utf-8"), f"{path}@{default}")
            )
    return keys
