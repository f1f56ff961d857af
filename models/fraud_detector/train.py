"""Train, validate and register a fraud-detector version: the CI step of Sluice's loop.

``python -m models.fraud_detector.train [--week N | --since TIME] [--seed S] [--[no-]register]``

``--since TIME`` trains on the newest data, from TIME up to now: what a retraining after drift
asks for (Sluice's default ``retrain_command`` passes when the drift alert started). The
synthetic generator's newest data is its current week, :data:`~models.fraud_detector.data.
NEWEST_WEEK`; ``--week newest`` names it too. Sluice also puts why it retrains in the
environment (``SLUICE_RETRAIN_SINCE``, ``SLUICE_DRIFTED_FEATURES``, ``SLUICE_RETRAIN_REASON``,
``SLUICE_DRIFTED_VERSION``); the run's params and the version's ``sluice.retrain.*`` tags
keep them, so the registry says why a version exists.

Order matters: the data contract is checked before MLflow sees anything (bad data leaves no run
and no version); the candidate and the current champion are scored on the same holdout rows;
every version is registered for the record, but only one that passes the quality gate gets the
``challenger`` alias that Sluice proposes from.

Exit codes: 0 registered as challenger (or trained with --no-register and the gate passed),
1 the gate failed, 2 bad data or arguments, 3 the registry is unreachable.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from controller.errors import InputError
from controller.quality.classification_metrics import binary_classification_metrics
from controller.quality.data_contract import validate_frame
from controller.quality.data_profile import build_profile
from controller.quality.quality_gate import GateVerdict, evaluate_gate, load_quality_gate
from controller.settings import load_settings
from models.fraud_detector.contract import CONTRACT
from models.fraud_detector.data import (
    CATEGORICAL_FEATURES,
    LABEL,
    NEWEST_WEEK,
    NUMERIC_FEATURES,
    generate_transactions,
)
from models.fraud_detector.pipeline import fit, frame_digest, score, split_holdout
from models.retrain_request import retrain_tags, since_time
from models.training_cli import finish

__all__ = ["TrainingResult", "main", "train"]

DEFAULT_GATE = Path(__file__).with_name("quality_gate.yaml")
CHALLENGER_ALIAS = "challenger"
CHAMPION_ALIAS = "champion"


@dataclass
class TrainingResult:
    """What one training run produced, as printed with ``--json``."""

    model: str
    week: int | None
    data: str
    run_id: str | None
    run_url: str | None
    version: int | None
    alias: str | None
    metrics: dict[str, float]
    champion_version: int | None
    champion_metrics: dict[str, float] | None
    holdout_rows: int
    holdout_digest: str
    gate: dict[str, Any]
    #: The version's ``sluice.provenance`` tag: its attestation's digest, or "unsigned".
    provenance: str | None = None

    @property
    def gate_passed(self) -> bool:
        return bool(self.gate["passed"])


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m models.fraud_detector.train",
        description="Train, validate and register a fraud-detector model version.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--week", type=_week, metavar="N|newest",
        help=f"synthetic data week (default 0; newest: {NEWEST_WEEK})",
    )  # fmt: skip
    which.add_argument(
        "--since", type=since_time, metavar="TIME",
        help="train on the newest data, from TIME (ISO 8601) up to now: what a retraining "
        "after drift asks for",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=7, help="data and model seed (default 7)")
    parser.add_argument("--rows", type=int, default=20_000, help="synthetic rows (default 20000)")
    parser.add_argument("--data", type=Path, help="train on this CSV or Parquet file instead")
    parser.add_argument("--model-name", default="fraud-detector", help="registered model name")
    parser.add_argument("--gate", type=Path, default=DEFAULT_GATE, help="quality gate YAML")
    parser.add_argument(
        "--register", action=argparse.BooleanOptionalAction, default=True,
        help="register a version in the registry (default) or only log the run",
    )  # fmt: skip
    parser.add_argument(
        "--train-fraction", type=float, default=1.0,
        help="train on this stratified share of the training rows (a deliberately weaker model)",
    )  # fmt: skip
    parser.add_argument(
        "--shuffle-labels", action="store_true",
        help="shuffle the training labels (a deliberately useless model, for demos and tests)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if not 0.0 < args.train_fraction <= 1.0:
        parser.error("--train-fraction must be in (0, 1]")
    if args.week is None:
        args.week = NEWEST_WEEK if args.since is not None else 0
    return args


def _week(text: str) -> int:
    if text == "newest":
        return NEWEST_WEEK
    try:
        week = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a week number nor newest") from None
    if week < 0:
        raise argparse.ArgumentTypeError("a week is >= 0")
    return week


def _load_frame(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    if args.data is None:
        return generate_transactions(week=args.week, rows=args.rows, seed=args.seed), (
            f"synthetic week {args.week} (seed {args.seed}, {args.rows} rows)"
        )
    path: Path = args.data
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path), str(path)
        return pd.read_csv(path), str(path)
    except FileNotFoundError:
        raise InputError(f"data file {path} does not exist; fix --data") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"data file {path} cannot be read ({first}); fix --data") from None


def train(args: argparse.Namespace) -> TrainingResult:
    """Validate, train, evaluate against the champion, log and (optionally) register."""
    gate = load_quality_gate(args.gate)
    frame, source = _load_frame(args)
    checked = validate_frame(frame, CONTRACT, source=source)  # raises before anything is logged

    train_rows, holdout = split_holdout(frame, args.seed)
    model = fit(
        train_rows, args.seed, fraction=args.train_fraction, shuffle_labels=args.shuffle_labels
    )
    scores = score(model, holdout)
    metrics = binary_classification_metrics(holdout[LABEL], scores)

    # Only now touch MLflow: everything above is local and cannot leave a half-made record.
    from models.fraud_detector.registry_io import MlflowTraining

    settings = load_settings()
    with MlflowTraining(settings, model_name=args.model_name) as tracking:
        champion = tracking.champion(CHAMPION_ALIAS)
        champion_metrics = None
        if champion is not None:
            champion_scores = score(tracking.load_sklearn(champion.version), holdout)
            champion_metrics = binary_classification_metrics(holdout[LABEL], champion_scores)
        verdict: GateVerdict = evaluate_gate(metrics, champion_metrics, gate)
        profile = build_profile(
            train_rows, numeric=NUMERIC_FEATURES, categorical=CATEGORICAL_FEATURES,
            predictions=score(model, train_rows), label=LABEL,
        )  # fmt: skip
        digest = frame_digest(holdout)
        params = {
            "week": args.week if args.data is None else "file",
            "since": args.since or "",
            "seed": args.seed,
            "data": source,
            "train_rows": len(train_rows),
            "train_fraction": args.train_fraction,
            "shuffle_labels": args.shuffle_labels,
            "holdout_rows": len(holdout),
            "holdout_digest": digest,
        }
        run_id, model_uri = tracking.log_run(
            model=model,
            input_example=train_rows.drop(columns=[LABEL]).head(5),
            params=params,
            metrics=metrics,
            champion=(champion.version, champion_metrics)
            if champion and champion_metrics
            else None,
            profile=profile.model_dump(mode="json"),
            verdict=verdict.model_dump(mode="json"),
        )
        run_url = tracking.run_url(run_id)
        version = alias = provenance = None
        if args.register:
            version = tracking.register(
                run_id,
                model_uri,
                tags={
                    "sluice.gate": "passed" if verdict.passed else "failed",
                    "sluice.gate_summary": verdict.summary()[:500],
                    "sluice.holdout_digest": digest,
                    "sluice.data": source,
                    **retrain_tags(),
                },
            )
            provenance = tracking.attest(
                version, frames={"train": train_rows, "holdout": holdout}, source=source,
                verdict=verdict, params=params, path=args.data, contract=checked,
            )  # fmt: skip
            if verdict.passed:
                tracking.set_alias(CHALLENGER_ALIAS, version)
                alias = CHALLENGER_ALIAS
    return TrainingResult(
        model=args.model_name,
        week=args.week if args.data is None else None,
        data=source,
        run_id=run_id,
        run_url=run_url,
        version=version,
        alias=alias,
        metrics=metrics,
        champion_version=champion.version if champion else None,
        champion_metrics=champion_metrics,
        holdout_rows=len(holdout),
        holdout_digest=digest,
        gate=verdict.model_dump(mode="json"),
        provenance=provenance,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors become one line on stderr and an exit code."""
    args = _parse_args(argv)
    return finish(lambda: train(args), as_json=args.json, report="models.fraud_detector.report")


if __name__ == "__main__":
    sys.exit(main())
