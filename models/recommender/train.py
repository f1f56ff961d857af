"""Train, validate and register a recommender version: the CI step of Sluice's loop.

``python -m models.recommender.train [--period normal|holiday | --since TIME] [--seed S]
[--requests N] [--variant full|popularity [--skip-gate]] [--[no-]register] [--json]``

The data is the synthetic traffic of :mod:`models.recommender.sessions` for one period:
``normal`` weeks (the default) or the ``holiday`` weeks, whose clicks follow other items and
other intents. ``--since TIME`` trains on the newest data, from TIME up to now: what a
retraining after drift asks for (Sluice's default ``retrain_command``); the generator's
newest data is the holiday season. Sluice's reasons for retraining (``SLUICE_RETRAIN_*`` in
the environment) become the version's ``sluice.retrain.*`` tags.

Order matters, as in the fraud detector's step: the data contract is checked before MLflow
sees anything; whole slates of the period go to the holdout, and the candidate and the
current champion rank the same holdout slates; every version is registered for the record,
but only one that passes the quality gate gets the ``challenger`` alias.

``--variant popularity`` trains the deliberately worse model of the demo ("faster but
recommends worse"): it ignores the user and the context. Its gate runs and is logged like any
other, and it fails it; ``--skip-gate`` (accepted with this variant only) sets the
``challenger`` alias anyway, tagged ``sluice.gate=skipped``, so that a rollout, not the
offline gate, is what catches it.

Exit codes: 0 registered as challenger (or trained with --no-register and the gate passed),
1 the gate failed, 2 bad data or arguments, 3 the registry is unreachable.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from controller.errors import InputError
from controller.quality.data_contract import validate_frame
from controller.quality.data_profile import build_profile, build_slice_profiles
from controller.quality.quality_gate import GateVerdict, evaluate_gate, load_quality_gate
from controller.settings import load_settings
from models.holdout_digest import frame_digest
from models.recommender.contract import CONTRACT
from models.recommender.pipeline import VARIANTS, fit, score, score_served, split_holdout
from models.recommender.ranking_metrics import click_metrics
from models.recommender.sessions import (
    CATEGORICAL_FEATURES,
    CLICK,
    FEATURES,
    NUMERIC_FEATURES,
    PERIODS,
    SLATE,
    generate_impressions,
)
from models.retrain_request import retrain_tags, since_time
from models.training_cli import finish

__all__ = ["NEWEST_PERIOD", "TrainingResult", "main", "train"]

DEFAULT_GATE = Path(__file__).with_name("quality_gate.yaml")
#: The period a retraining after drift (``--since``) trains on: the generator's newest data.
NEWEST_PERIOD = "holiday"
#: Fewest requests (slates) of synthetic data: the data contract's row minimum.
MIN_REQUESTS = 500


@dataclass
class TrainingResult:
    """What one training run produced, as printed with ``--json``."""

    model: str
    variant: str
    period: str | None
    data: str
    run_id: str | None
    run_url: str | None
    version: int | None
    alias: str | None
    metrics: dict[str, float]
    champion_version: int | None
    champion_metrics: dict[str, float] | None
    holdout_rows: int
    holdout_slates: int
    holdout_digest: str
    gate: dict[str, Any]
    gate_skipped: bool

    @property
    def gate_passed(self) -> bool:
        """True when the gate passed, or was skipped on purpose (``--skip-gate``)."""
        return bool(self.gate["passed"]) or self.gate_skipped


class _OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit 2, as every other bad input is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"train: error: {message}; see --help\n")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _OneLineParser(
        prog="python -m models.recommender.train",
        description="Train, validate and register a recommender (click-through) model version.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--period", choices=PERIODS,
        help="synthetic traffic of normal weeks (default) or of the holiday weeks",
    )  # fmt: skip
    which.add_argument(
        "--since", type=since_time, metavar="TIME",
        help="train on the newest data, from TIME (ISO 8601) up to now: what a retraining "
        f"after drift asks for (the {NEWEST_PERIOD} weeks)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=7, help="data and model seed (default 7)")
    parser.add_argument(
        "--requests", type=int, default=5_000,
        help="synthetic requests, each a slate of 6 items shown (default 5000)",
    )  # fmt: skip
    parser.add_argument("--data", type=Path, help="train on this CSV or Parquet file instead")
    parser.add_argument(
        "--variant", choices=VARIANTS, default="full",
        help="full (user, item and context) or popularity (the item alone: a deliberately "
        "worse model for the demo)",
    )  # fmt: skip
    parser.add_argument(
        "--skip-gate", action="store_true",
        help="with --variant popularity only: set the challenger alias whatever the gate says "
        "(for the demo's rollback)",
    )  # fmt: skip
    parser.add_argument("--model-name", default="recommender", help="registered model name")
    parser.add_argument("--gate", type=Path, default=DEFAULT_GATE, help="quality gate YAML")
    parser.add_argument(
        "--register", action=argparse.BooleanOptionalAction, default=True,
        help="register a version in the registry (default) or only log the run",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.requests < MIN_REQUESTS:
        parser.error(f"--requests must be at least {MIN_REQUESTS}")
    if args.skip_gate and args.variant != "popularity":
        parser.error(
            "--skip-gate is only for --variant popularity, the demo's deliberately worse model"
        )
    if args.period is None:
        args.period = NEWEST_PERIOD if args.since is not None else "normal"
    return args


def _load_frame(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    if args.data is None:
        frame = generate_impressions(args.period, requests=args.requests, seed=args.seed)
        return frame, f"synthetic {args.period} weeks (seed {args.seed}, {args.requests} requests)"
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


def _holdout_metrics(holdout: pd.DataFrame, scores: Any) -> dict[str, float]:
    return click_metrics(holdout[SLATE], holdout[CLICK], scores)


def train(args: argparse.Namespace) -> TrainingResult:
    """Validate, train, rank the holdout against the champion, log and (optionally) register."""
    gate = load_quality_gate(args.gate)
    frame, source = _load_frame(args)
    checked = validate_frame(frame, CONTRACT, source=source)  # raises before anything is logged

    train_rows, holdout = split_holdout(frame, args.seed)
    model = fit(args.variant, train_rows, args.seed)
    metrics = _holdout_metrics(holdout, score(model, holdout))
    digest = frame_digest(holdout)

    # Only now touch MLflow: everything above is local and cannot leave a half-made record.
    from models.recommender.registry_io import RecommenderTraining
    from models.registry_session import CHALLENGER_ALIAS

    with RecommenderTraining(load_settings(), model_name=args.model_name) as tracking:
        champion = tracking.champion()
        champion_metrics = None
        if champion is not None:
            served = tracking.load_pyfunc(champion.version)
            champion_metrics = _holdout_metrics(holdout, score_served(served, holdout))
        verdict: GateVerdict = evaluate_gate(metrics, champion_metrics, gate)
        train_scores = score(model, train_rows)
        profile = build_profile(
            train_rows, numeric=NUMERIC_FEATURES, categorical=CATEGORICAL_FEATURES,
            predictions=train_scores, label=CLICK,
        )  # fmt: skip
        # Per segment too: `sluice drift --by user_segment --outcome click` compares each
        # segment's inputs and click rate with that segment's training rows.
        by_segment = build_slice_profiles(
            train_rows, "user_segment", numeric=NUMERIC_FEATURES,
            categorical=CATEGORICAL_FEATURES, predictions=train_scores, label=CLICK,
        )  # fmt: skip
        params = {
            "period": args.period if args.data is None else "file",
            "since": args.since or "",
            "variant": args.variant,
            "skip_gate": args.skip_gate,
            "seed": args.seed,
            "data": source,
            "train_rows": len(train_rows),
            "holdout_rows": len(holdout),
            "holdout_digest": digest,
        }
        run_id, model_uri = tracking.log_run(
            estimator=model,
            input_example=holdout[FEATURES].head(5),
            params=params,
            metrics=metrics,
            champion=(champion.version, champion_metrics)
            if champion is not None and champion_metrics is not None
            else None,
            profile=profile.model_dump(mode="json"),
            slice_profiles=by_segment.model_dump(mode="json"),
            verdict=verdict.model_dump(mode="json"),
        )
        run_url = tracking.run_url(run_id)
        version = alias = None
        if args.register:
            outcome = "passed" if verdict.passed else "failed"
            tags = {
                "sluice.gate": "skipped" if args.skip_gate else outcome,
                "sluice.gate_summary": verdict.summary()[:500],
                "sluice.holdout_digest": digest,
                "sluice.data": source,
                "recommender.variant": args.variant,
                **retrain_tags(),
            }
            version = tracking.register(run_id, model_uri, tags=tags)
            tracking.attest(
                version, frames={"train": train_rows, "holdout": holdout}, source=source,
                verdict=verdict, params=params, path=args.data, contract=checked,
            )  # fmt: skip
            if verdict.passed or args.skip_gate:
                tracking.set_alias(CHALLENGER_ALIAS, version)
                alias = CHALLENGER_ALIAS
    return TrainingResult(
        model=args.model_name,
        variant=args.variant,
        period=args.period if args.data is None else None,
        data=source,
        run_id=run_id,
        run_url=run_url,
        version=version,
        alias=alias,
        metrics=metrics,
        champion_version=champion.version if champion else None,
        champion_metrics=champion_metrics,
        holdout_rows=len(holdout),
        holdout_slates=int(holdout[SLATE].nunique()),
        holdout_digest=digest,
        gate=verdict.model_dump(mode="json"),
        gate_skipped=args.skip_gate,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors become one line on stderr and an exit code."""
    args = _parse_args(argv)
    return finish(lambda: train(args), as_json=args.json, report="models.recommender.report")


if __name__ == "__main__":
    sys.exit(main())
