"""Train, judge per regime and register one market-regime model.

``python -m models.market_regime.train --model {classifier,calm,volatile,blend} [--seed S]
[--rows N] [--worse-in REGIME] [--model-name NAME] [--[no-]register] [--json]``

Each kind is its own registered model (default ``market-regime-KIND``). The data is the
synthetic market of :mod:`models.market_regime.market`, split in time: the last quarter of
the rows is the holdout. The candidate and the current ``champion`` are scored on the same
holdout rows, per regime (``all`` and each regime's rows), and judged by the model's section
of ``quality_gate.yaml``, which names the regimes where it must be good. Every version is
registered for the record; one that passes gets the ``challenger`` alias.

The blend is fitted and judged with the members the other kinds register from the same
``--seed`` and ``--rows``: it takes their answers as its inputs.

``--worse-in REGIME`` makes a deliberately worse candidate in that regime only: its target is
corrupted on that regime's training rows (the next direction flipped; for the classifier, the
regime taken for its neighbour: calm and volatile for each other, a black swan for volatile).
A specialist trains on its own regime's rows only, so it takes its own regime. The candidate
fails the gate's checks of that regime and no other, which a rollout judged per regime needs.

Exit codes: 0 registered as challenger (or trained with --no-register and the gate passed),
1 the gate failed, 2 bad arguments or gate file, 3 the registry is unreachable.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from controller.quality.data_profile import build_profile, build_slice_profiles
from controller.quality.quality_gate import GateVerdict
from controller.settings import load_settings
from models.holdout_digest import frame_digest
from models.market_regime.market import REGIME, REGIMES, market_frame
from models.market_regime.pipeline import (
    KINDS,
    Members,
    fit,
    fit_members,
    model_config,
    model_inputs,
    predict,
    score,
    split_holdout,
)
from models.market_regime.regime_gate import evaluate_regime_gate, load_regime_gates
from models.market_regime.regime_metrics import flatten, scope_rows
from models.training_cli import finish

__all__ = ["Candidate", "TrainingResult", "main", "prepare", "train"]

DEFAULT_GATE = Path(__file__).with_name("quality_gate.yaml")
MIN_ROWS = 2_000


@dataclass
class TrainingResult:
    """What one training run produced, as printed with ``--json``."""

    model: str
    kind: str
    worse_in: str | None
    data: str
    run_id: str | None
    run_url: str | None
    version: int | None
    alias: str | None
    metrics: dict[str, dict[str, float]]
    champion_version: int | None
    champion_metrics: dict[str, dict[str, float]] | None
    holdout_rows: dict[str, int]
    holdout_digest: str
    gate: dict[str, Any]
    #: The version's ``sluice.provenance`` tag: its attestation's digest, or "unsigned".
    provenance: str | None = None

    @property
    def gate_passed(self) -> bool:
        return bool(self.gate["passed"])


@dataclass
class Candidate:
    """A fitted model of one kind and its answers on the holdout, before MLflow is touched."""

    kind: str
    estimator: Any
    train_rows: pd.DataFrame
    holdout: pd.DataFrame
    members: Members | None  # the blend's inputs come from these
    inputs: pd.DataFrame  # what the holdout rows are sent as
    outputs: pd.DataFrame  # what the candidate answers
    metrics: dict[str, dict[str, float]]

    def profile(self) -> dict[str, Any]:
        """The reference profile of the training inputs (and the served score, ``p_up``)."""
        inputs, scores = self._profiled_inputs()
        profile = build_profile(
            inputs, numeric=list(inputs.columns), categorical=[], predictions=scores
        )
        return profile.model_dump(mode="json")

    def slice_profiles(self) -> dict[str, Any]:
        """One reference profile per regime, of that regime's training rows, built as
        :meth:`profile` builds the pooled one (``reference_profiles_by.json``): what
        ``sluice drift --by regime`` compares each regime's live inputs with."""
        inputs, scores = self._profiled_inputs()
        profiles = build_slice_profiles(
            inputs.assign(**{REGIME: self.train_rows[REGIME].to_numpy()}),
            REGIME,
            numeric=list(inputs.columns),
            categorical=[],
            predictions=scores,
        )
        return profiles.model_dump(mode="json")

    def _profiled_inputs(self) -> tuple[pd.DataFrame, Any]:
        """The training rows as requests (in order) and, but for the classifier, its scores."""
        inputs = model_inputs(self.kind, self.train_rows, self.members)
        scores = None
        if self.kind != "classifier":
            scores = predict(self.kind, self.estimator, inputs)["p_up"].to_numpy()
        return inputs, scores


def prepare(kind: str, frame: pd.DataFrame, seed: int, *, worse_in: str | None = None) -> Candidate:
    """Split, fit ``kind`` and score it on the holdout: everything that needs no registry."""
    train_rows, holdout = split_holdout(frame)
    members = fit_members(train_rows, seed) if kind == "blend" else None
    estimator = fit(kind, train_rows, seed, worse_in=worse_in)
    inputs = model_inputs(kind, holdout, members)
    outputs = predict(kind, estimator, inputs)
    return Candidate(
        kind=kind,
        estimator=estimator,
        train_rows=train_rows,
        holdout=holdout,
        members=members,
        inputs=inputs,
        outputs=outputs,
        metrics=score(kind, outputs, holdout),
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m models.market_regime.train",
        description="Train, judge per regime and register one market-regime model.",
    )
    parser.add_argument(
        "--model", required=True, choices=KINDS, dest="kind",
        help="which model: the regime classifier, a specialist (calm, volatile) or the blend",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=7, help="market and model seed (default 7)")
    parser.add_argument(
        "--rows", type=int, default=20_000, help="feature rows, one a day (default 20000)"
    )
    parser.add_argument("--model-name", help="registered model name (default: market-regime-MODEL)")
    parser.add_argument(
        "--worse-in", choices=REGIMES, metavar="REGIME",
        help="a deliberately worse candidate in this regime only (calm, volatile, black_swan; "
        "a specialist takes its own regime)",
    )  # fmt: skip
    parser.add_argument("--gate", type=Path, default=DEFAULT_GATE, help="quality gate YAML")
    parser.add_argument(
        "--register", action=argparse.BooleanOptionalAction, default=True,
        help="register a version in the registry (default) or only log the run",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.rows < MIN_ROWS:
        parser.error(f"--rows must be at least {MIN_ROWS}")
    if args.model_name is None:
        args.model_name = f"market-regime-{args.kind}"
    return args


def _champion_metrics(tracking: Any, version: int, candidate: Candidate) -> dict[str, Any]:
    champion = tracking.load_pyfunc(version)
    outputs = pd.DataFrame(champion.predict(candidate.inputs))
    return score(candidate.kind, outputs, candidate.holdout)


def train(args: argparse.Namespace) -> TrainingResult:
    """Fit, judge against the gate and the champion, log and (optionally) register."""
    gate = load_regime_gates(args.gate).of(args.kind)
    source = f"synthetic market (seed {args.seed}, {args.rows} rows)"
    candidate = prepare(
        args.kind, market_frame(rows=args.rows, seed=args.seed), args.seed, worse_in=args.worse_in
    )
    digest = frame_digest(candidate.holdout)

    # Only now touch MLflow: everything above is local and cannot leave a half-made record.
    from models.market_regime.registry_io import RegimeTraining
    from models.registry_session import CHALLENGER_ALIAS

    with RegimeTraining(load_settings(), model_name=args.model_name) as tracking:
        champion = tracking.champion()
        champion_metrics = None
        if champion is not None:
            champion_metrics = _champion_metrics(tracking, champion.version, candidate)
        verdict: GateVerdict = evaluate_regime_gate(candidate.metrics, champion_metrics, gate)
        params = {
            "model": args.kind,
            "seed": args.seed,
            "rows": args.rows,
            "worse_in": args.worse_in or "",
            "data": source,
            "train_rows": len(candidate.train_rows),
            "holdout_rows": len(candidate.holdout),
            "holdout_digest": digest,
        }
        run_id, model_uri = tracking.log_run(
            estimator=candidate.estimator,
            model_config=model_config(args.kind),
            input_example=candidate.inputs.head(5),
            output_example=candidate.outputs.head(5),
            params=params,
            metrics=flatten(candidate.metrics),
            champion=(champion.version, flatten(champion_metrics))
            if champion is not None and champion_metrics is not None
            else None,
            profile=candidate.profile(),
            slice_profiles=candidate.slice_profiles(),
            verdict=verdict.model_dump(mode="json"),
        )
        run_url = tracking.run_url(run_id)
        version = alias = provenance = None
        if args.register:
            tags = {
                "sluice.gate": "passed" if verdict.passed else "failed",
                "sluice.gate_summary": verdict.summary()[:500],
                "sluice.holdout_digest": digest,
                "sluice.data": source,
                "market_regime.model": args.kind,
            }
            if args.worse_in:
                tags["market_regime.worse_in"] = args.worse_in
            version = tracking.register(run_id, model_uri, tags=tags)
            provenance = tracking.attest(
                version,
                frames={"train": candidate.train_rows, "holdout": candidate.holdout},
                source=source,
                verdict=verdict,
                params=params,
            )
            if verdict.passed:
                tracking.set_alias(CHALLENGER_ALIAS, version)
                alias = CHALLENGER_ALIAS
    return TrainingResult(
        model=args.model_name,
        kind=args.kind,
        worse_in=args.worse_in,
        data=source,
        run_id=run_id,
        run_url=run_url,
        version=version,
        alias=alias,
        metrics=candidate.metrics,
        champion_version=champion.version if champion else None,
        champion_metrics=champion_metrics,
        holdout_rows=scope_rows(candidate.holdout[REGIME]),
        holdout_digest=digest,
        gate=verdict.model_dump(mode="json"),
        provenance=provenance,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors become one line on stderr and an exit code."""
    args = _parse_args(argv)
    return finish(lambda: train(args), as_json=args.json, report="models.market_regime.report")


if __name__ == "__main__":
    sys.exit(main())
