"""Train a diabetes-progression regressor with plain MLflow, and give Sluice what it needs.

Nothing here is Sluice's but the calls of :mod:`controller.training`: the model is logged
and registered by MLflow's own ``log_model`` (scikit-learn flavour, MLflow's default format,
an input example so the signature and the load test's rows come with it). Run it with
``MLFLOW_TRACKING_URI`` set (``eval "$(sluice local env)"``)::

    python -m models.diabetes_regressor.train [--alpha A] [--model-name NAME] [--data CSV]

The data is checked first against the team's own pandera suite
(:mod:`models.diabetes_regressor.data_schema`), not a Sluice contract: a violation stops here
(exit 2, one line in the suite's words) before MLflow sees anything, and the pass is recorded
in the version's provenance attestation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from controller import training
from controller.errors import InputError, SluiceError
from models.diabetes_regressor.data_schema import TARGET, DiabetesData


def _load(path: Path | None) -> tuple[pd.DataFrame, str]:
    """The study's data (scikit-learn's copy), or a CSV of the same columns."""
    if path is None:
        return load_diabetes(as_frame=True).frame, "sklearn"
    try:
        return pd.read_csv(path), str(path)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"data file {path} cannot be read ({first}); fix --data") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=0.1, help="Ridge regularisation")
    parser.add_argument("--model-name", default="diabetes-regressor")
    parser.add_argument("--data", type=Path, help="train on this CSV (the study's columns)")
    args = parser.parse_args(argv)
    # An unreadable signing key or data that fails the team's suite stops here, before any run
    # or version is written.
    try:
        training.check_signing_key()
        frame, source = _load(args.data)
        checked = training.validate_frame(frame, DiabetesData, source=source)
    except SluiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)

    X, y = frame.drop(columns=[TARGET]), frame[TARGET]
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    mlflow.set_experiment(args.model_name)
    with mlflow.start_run():
        model = Ridge(alpha=args.alpha).fit(X_train, y_train)
        r2 = float(r2_score(y_test, model.predict(X_test)))
        mlflow.log_metric("r2", r2)
        info = mlflow.sklearn.log_model(
            model, name="model", input_example=X_train.head(5),
            registered_model_name=args.model_name,
        )  # fmt: skip
        # What Sluice reads: the drift reference, and the quality gate's verdict (challenger).
        training.log_reference_profile(X_train, predictions=model.predict(X_train))
        verdict = training.record_gate(info, {"r2": r2}, minimum={"r2": 0.3})
        # And what it was built from, signed when SLUICE_SIGNING_KEY is set (provenance).
        training.record_provenance(
            info,
            datasets=[
                training.dataset(
                    X_train.assign(target=y_train), name="train", source=source, contract=checked
                ),
                training.dataset(
                    X_test.assign(target=y_test), name="holdout", source=source, contract=checked
                ),
            ],
            gate=verdict,
            parameters={"alpha": args.alpha},
        )
    print(f"{args.model_name} v{info.registered_model_version}: r2 {r2:.3f}, {verdict.summary()}")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
