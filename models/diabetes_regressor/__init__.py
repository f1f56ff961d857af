"""A second example model, deliberately unlike the fraud detector: a scikit-learn regressor
trained with plain MLflow calls, onboarded with ``sluice init``."""
