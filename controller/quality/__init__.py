"""What a model is judged on before it reaches the registry: the training data's contract and
profile, its holdout classification metrics, and the quality gate between training and the
``challenger`` alias."""

__all__: list[str] = []
