"""Provenance: what a registered version was built from, by whom, signed.

Training records an in-toto Statement (SLSA provenance v1) for every version it registers:
the sha256 of every file of the model artifact as its subjects, the datasets' canonical
digests (and DVC's md5 and path), the training code's Git commit, the builder (the CI run) and
the quality gate's verdict, signed as a DSSE envelope with an Ed25519 key
(:mod:`controller.training` writes it). The modules here are the pure parts: the dataset
digest (:mod:`~controller.provenance.dataset`), the statement
(:mod:`~controller.provenance.statement`), signing and keys (:mod:`~controller.provenance.
signing`), the verification a proposal or a person runs (:mod:`~controller.provenance.
verify`), and an environment's policy applied to a version: its keys from Git, the outcome's
tag, the pin's annotations (:mod:`~controller.provenance.policy`).
"""

__all__: list[str] = []
