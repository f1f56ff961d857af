"""Signed provenance envelopes of a small fake artifact, for tests with the in-memory
attestation store (:class:`controller.testing.attestations.MemoryAttestations`): the
statement training would write, signed with a key made once per session, without training.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from controller.provenance.dataset import dataset_record
from controller.provenance.signing import (
    KEY_ENV,
    envelope_line,
    generate_keypair,
    load_signer,
    sign_statement,
)
from controller.provenance.statement import build_statement, code_source_from_env

__all__ = ["CI_PUBLIC", "COMMIT", "FILES", "OTHER_PUBLIC", "RUN_URL", "envelope"]

RUN_URL = "https://github.com/acme/models/actions/runs/4242"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CI = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/models",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_SHA": COMMIT,
}
#: The artifact's files, as the store serves them until a test tampers with one.
FILES = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x04pickled", "conda.yaml": b"deps\n"}
_CI_PRIVATE, CI_PUBLIC = generate_keypair()
_, OTHER_PUBLIC = generate_keypair()


def envelope(model: str, version: int = 1, *, signed: bool = True, builder: str = RUN_URL) -> bytes:
    """``provenance.intoto.jsonl`` of ``model`` v``version`` over :data:`FILES`, signed with
    the key whose public half is :data:`CI_PUBLIC` (or unsigned)."""
    frame = pd.DataFrame({"amount": [1.0, 2.0], "fraud": [0, 1]})
    statement = build_statement(
        subjects={name: hashlib.sha256(content).hexdigest() for name, content in FILES.items()},
        model=model, version=version, run_id="r1", entry_point="models.fraud_detector.train",
        parameters={}, datasets=[dataset_record(frame, name="train", source="week 0")],
        code=code_source_from_env(CI), builder=builder, gate={"passed": True, "checks": []},
    )  # fmt: skip
    signer = load_signer({KEY_ENV: _CI_PRIVATE.decode()}) if signed else None
    return envelope_line(sign_statement(statement, signer))
