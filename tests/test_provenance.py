"""Provenance's pure parts: the canonical dataset digest, DVC's record, the statement, DSSE
signing, and verification link by link (against the in-memory attestation store); the
envelope is also verified with the in-toto library itself, not only with Sluice's code."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from in_toto.exceptions import SignatureVerificationError
from in_toto.models.metadata import Envelope as InTotoEnvelope
from in_toto.models.metadata import Metadata
from in_toto_attestation.v1.statement import Statement
from securesystemslib.signer import CryptoSigner

from controller.errors import ConfigError
from controller.provenance.dataset import (
    canonical_lines,
    dataset_record,
    dvc_entry,
    frame_sha256,
)
from controller.provenance.signing import (
    KEY_ENV,
    KEY_FILE_ENV,
    envelope_line,
    generate_keypair,
    load_public_key,
    load_signer,
    sign_statement,
)
from controller.provenance.statement import (
    LOCAL_BUILDER,
    PREDICATE_TYPE,
    build_statement,
    builder_id,
    code_source_from_env,
    file_digests,
)
from controller.provenance.verify import verify_attestation, verify_version
from controller.testing.attestations import MemoryAttestations

CI = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/models",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
}
RUN_URL = "https://github.com/acme/models/actions/runs/4242"
FILES = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x04pickled", "conda.yaml": b"deps\n"}


# -- the canonical dataset digest ----------------------------------------------------------


def test_canonical_text_is_as_documented() -> None:
    """Sorted columns with their kinds, then one compact JSON array per row."""
    frame = pd.DataFrame(
        {"b": [0.1, np.nan, 1.0], "a": [1, 2, 3], "c": ["x", None, "é"], "d": [True, False, True]}
    )
    assert list(canonical_lines(frame)) == [
        '[["a", "int"], ["b", "float"], ["c", "str"], ["d", "bool"]]',
        '[1,0.1,"x",true]',
        "[2,null,null,false]",
        '[3,1.0,"é",true]',
    ]


def test_digest_ignores_index_and_column_order_but_not_rows_or_values() -> None:
    frame = pd.DataFrame({"x": [1.5, 2.5, -0.0], "y": ["a", "b", "c"]})
    digest = frame_sha256(frame)
    assert digest.startswith("sha256:")
    assert frame_sha256(frame[["y", "x"]].set_index(pd.Index([7, 8, 9]))) == digest
    assert frame_sha256(frame.iloc[::-1]) != digest  # row order is part of the identity
    assert frame_sha256(frame.assign(x=[1.5, 2.5, 0.0])) != digest  # -0.0 is not 0.0
    assert frame_sha256(frame.assign(x=frame["x"].astype("float32"))) == digest
    as_int = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    assert frame_sha256(as_int) != frame_sha256(as_int.astype({"x": float}))


def test_dvc_sidecar_and_lock_give_md5_and_repository_path(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("a\n1\n")
    (data / "train.csv.dvc").write_text(
        "outs:\n- md5: 3f1c\n  size: 4\n  hash: md5\n  path: train.csv\n  remote: store\n"
    )
    entry = dvc_entry(data / "train.csv")
    assert entry is not None
    assert (entry.path, entry.md5, entry.size, entry.remote) == (
        "data/train.csv",
        "3f1c",
        4,
        "store",
    )

    (data / "features.parquet").write_bytes(b"PAR1")
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  featurize:\n    cmd: python f.py\n"
        "    outs:\n    - path: data/features.parquet\n      md5: 9ab0\n      size: 4\n"
    )
    locked = dvc_entry(data / "features.parquet")
    assert locked is not None
    assert (locked.path, locked.md5) == ("data/features.parquet", "9ab0")
    assert locked.recorded_in.endswith("dvc.lock")
    (data / "untracked.csv").write_text("a\n")
    assert dvc_entry(data / "untracked.csv") is None


# -- the statement, signed --------------------------------------------------------------------


def _statement(builder: str = RUN_URL, files: dict[str, bytes] = FILES) -> dict[str, Any]:
    frame = pd.DataFrame({"amount": [1.0, 2.0], "fraud": [0, 1]})
    return build_statement(
        subjects={name: hashlib.sha256(content).hexdigest() for name, content in files.items()},
        model="fraud-detector",
        version=3,
        run_id="r1",
        entry_point="models.fraud_detector.train",
        parameters={"seed": 7},
        datasets=[
            dataset_record(frame, name="train", source="week 0", contract={"passed": True}),
        ],
        code=code_source_from_env(CI),
        builder=builder,
        gate={"passed": True, "checks": []},
    )


@pytest.fixture
def signer() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


def test_statement_is_slsa_provenance_with_datasets_code_and_gate() -> None:
    statement = _statement()
    assert statement["predicateType"] == PREDICATE_TYPE
    assert [s["name"] for s in statement["subject"]] == sorted(FILES)
    build = statement["predicate"]["buildDefinition"]
    code, data = build["resolvedDependencies"]
    assert code["digest"] == {"gitCommit": CI["GITHUB_SHA"]}
    assert code["uri"] == f"git+https://github.com/acme/models@{CI['GITHUB_SHA']}"
    assert data["name"] == "dataset:train"
    assert data["annotations"]["rows"] == 2
    assert data["annotations"]["dataContract"] == {"passed": True}
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] == RUN_URL
    assert run["byproducts"][0]["annotations"]["passed"] is True


def test_builder_is_the_workflow_run_in_actions_and_local_elsewhere() -> None:
    assert builder_id(CI) == RUN_URL
    assert builder_id({}) == LOCAL_BUILDER
    assert code_source_from_env({}) is None


def test_in_toto_verifies_the_envelope_sluice_writes(tmp_path: Path, signer: CryptoSigner) -> None:
    """The in-toto library loads the logged line as a DSSE envelope and verifies its signature
    with the public key; in-toto-attestation validates the payload as a Statement v1."""
    path = tmp_path / "provenance.intoto.jsonl"
    path.write_bytes(envelope_line(sign_statement(_statement(), signer)))
    loaded = Metadata.load(str(path))
    assert isinstance(loaded, InTotoEnvelope)
    # in-toto takes a key as its dict (securesystemslib's form, with the keyid).
    loaded.verify_signature({"keyid": signer.public_key.keyid, **signer.public_key.to_dict()})
    payload = json.loads(loaded.payload)
    assert payload["_type"] == "https://in-toto.io/Statement/v1"
    Statement.copy_from_pb(Statement([], "", {}).pb)
    other = CryptoSigner.generate_ed25519().public_key
    with pytest.raises(SignatureVerificationError):
        loaded.verify_signature({"keyid": other.keyid, **other.to_dict()})


# -- verification -------------------------------------------------------------------------


def _store(signer: CryptoSigner | None, builder: str = RUN_URL) -> MemoryAttestations:
    store = MemoryAttestations()
    line = envelope_line(sign_statement(_statement(builder), signer))
    store.record("fraud-detector", 3, FILES, line)
    return store


def _verify(store: MemoryAttestations, keys: list[Any], builders: list[str] | None = None) -> Any:
    return verify_version(
        store,
        "fraud-detector",
        3,
        trusted_keys=keys,
        builders=builders or ["https://github.com/acme/models/actions/runs/*"],
    )


def test_signed_untouched_version_verifies(signer: CryptoSigner) -> None:
    result = _verify(_store(signer), [signer.public_key])
    assert result.verified, result.reason
    assert result.keyid == signer.public_key.keyid
    assert "3 files match" in result.line("fraud-detector v3")


def test_tampered_file_fails_naming_it(signer: CryptoSigner) -> None:
    store = _store(signer)
    store.tamper("fraud-detector", 3, "model.pkl", b"something else")
    result = _verify(store, [signer.public_key])
    assert (result.verified, result.failed) == (False, "subjects")
    assert result.reason.startswith("model.pkl has sha256")
    line = result.line("fraud-detector v3")
    assert "\n" not in line
    assert "subjects check failed: model.pkl" in line


def test_added_file_fails(signer: CryptoSigner) -> None:
    store = _store(signer)
    store.tamper("fraud-detector", 3, "extra.py", b"import os")
    result = _verify(store, [signer.public_key])
    assert result.failed == "subjects"
    assert "extra.py is in the artifact but not in the attestation" in result.reason


def test_wrong_key_fails_at_the_signature(signer: CryptoSigner) -> None:
    other = CryptoSigner.generate_ed25519().public_key
    result = _verify(_store(signer), [other])
    assert result.failed == "signature"
    assert "no trusted key signed it" in result.reason


def test_unsigned_fails_at_the_signature() -> None:
    result = _verify(_store(None), [CryptoSigner.generate_ed25519().public_key])
    assert (result.failed, result.reason) == (
        "signature",
        "the attestation is unsigned (no signing key in training)",
    )


def test_wrong_builder_fails(signer: CryptoSigner) -> None:
    result = _verify(_store(signer, builder=LOCAL_BUILDER), [signer.public_key])
    assert result.failed == "builder"
    assert result.reason == "built by local, not an allowed builder"


def test_missing_or_garbled_attestation_fails_first(signer: CryptoSigner) -> None:
    store = MemoryAttestations()
    store.record("fraud-detector", 3, FILES, None)
    assert _verify(store, [signer.public_key]).failed == "attestation"
    result = verify_attestation(
        b"not json\n", trusted_keys=[signer.public_key], builders=[], served={}
    )
    assert (result.failed, result.reason) == (
        "attestation",
        "the attestation is not a DSSE envelope",
    )


# -- keys ---------------------------------------------------------------------------------


def test_signer_from_env_or_file_and_none_without(tmp_path: Path) -> None:
    private_pem, public_pem = generate_keypair()
    from_env = load_signer({KEY_ENV: private_pem.decode()})
    assert from_env is not None
    assert from_env.public_key == load_public_key(public_pem, "pub")
    key_file = tmp_path / "k.key"
    key_file.write_bytes(private_pem)
    from_file = load_signer({KEY_FILE_ENV: str(key_file)})
    assert from_file is not None
    assert from_file.public_key.keyid == from_env.public_key.keyid
    assert load_signer({}) is None


def test_bad_key_is_one_line_without_the_secret() -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ConfigError) as caught:
        load_signer({KEY_ENV: secret})
    assert "SLUICE_SIGNING_KEY is not an unencrypted PEM private key" in caught.value.message
    assert "TOPSECRET" not in caught.value.message
    _, public_pem = generate_keypair()
    with pytest.raises(ConfigError, match="is not a PEM public key"):
        load_public_key(b"nope", "--key k.pub")
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        load_signer({KEY_ENV: public_pem.decode()})


def test_file_digests_are_every_file_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "MLmodel").write_bytes(b"a")
    (tmp_path / "sub" / "x.bin").write_bytes(b"b")
    assert file_digests(tmp_path) == {
        "MLmodel": hashlib.sha256(b"a").hexdigest(),
        "sub/x.bin": hashlib.sha256(b"b").hexdigest(),
    }


def test_training_dataset_records_the_contract_it_passed(tmp_path: Path) -> None:
    """training.dataset: the digest of exactly these rows, the contract's checks and rows, and
    DVC's entry of the file they were read from."""
    from controller import training
    from models.fraud_detector.contract import CONTRACT
    from models.fraud_detector.data import generate_transactions

    frame = generate_transactions(week=0, rows=500, seed=3)
    (tmp_path / ".dvc").mkdir()
    path = tmp_path / "t.csv"
    path.write_text("x\n")
    (tmp_path / "t.csv.dvc").write_text("outs:\n- md5: abc\n  path: t.csv\n")
    record = training.dataset(frame, name="train", source="week 0", path=path, contract=CONTRACT)
    assert record.digest == frame_sha256(frame)
    assert record.rows == 500
    assert record.dvc is not None
    assert (record.dvc.path, record.dvc.md5) == ("t.csv", "abc")
    assert record.contract["passed"] is True
    assert record.contract["rows"] == 500
    assert "column amount" in record.contract["checks"]


def test_local_training_code_is_head_with_origin_stripped_of_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside Actions the commit is the working tree's HEAD; a token in origin's URL never
    reaches the statement; uncommitted changes to tracked files mark it dirty."""
    import subprocess

    from controller import training

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    git("init", "-q")
    git("remote", "add", "origin", "https://x-access-token:ghp_SECRET@github.com/acme/models.git")
    (tmp_path / "train.py").write_text("print(1)\n")
    git("add", "train.py")
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "train")
    monkeypatch.chdir(tmp_path)
    source = training._code_source({})
    assert source is not None
    assert source.repository == "git+https://github.com/acme/models.git"
    assert (source.commit, source.dirty) == (git("rev-parse", "HEAD"), False)
    (tmp_path / "train.py").write_text("print(2)\n")
    dirty = training._code_source({})
    assert dirty is not None
    assert dirty.dirty is True
