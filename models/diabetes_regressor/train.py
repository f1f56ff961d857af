"""Train a diabetes-progression regressor with plain MLflow, and give Sluice what it needs.

Nothing here is Sluice's but the calls of :mod:`controller.training`: the model is logged
and registered by MLflow's own ``log_model`` (scikit-learn flavour, MLflow's default format,
an input example so the signature and the load test's rows come with it). Run it with
``MLFLOW_TRACKING_URI`` set (``eval "$(sluice local env)"``)::

    python -m models.diabetes_regressor.train [--alpha A] [--model-name NAME]
"""

from __future__ import annotations

import argparse
import sys

import mlflow
import mlflow.sklearn
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from controller import training
from controller.errors import SluiceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=0.1, help="Ridge regularisation")
    parser.add_argument("--model-name", default="diabetes-regressor")
    args = parser.parse_args(argv)
    try:  # an unreadable signing key stops here, before any run or version is written
        training.check_signing_key()
    except SluiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)

    X, y = load_diabetes(return_X_y=True, as_frame=True)
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
                training.dataset(X_train.assign(target=y_train), name="train", source="sklearn"),
                training.dataset(X_test.assign(target=y_test), name="holdout", source="sklearn"),
            ],
            gate=verdict,
            parameters={"alpha": args.alpha},
        )
    print(f"{args.model_name} v{info.registered_model_version}: r2 {r2:.3f}, {verdict.summary()}")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
