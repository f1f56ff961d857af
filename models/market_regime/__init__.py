"""Market-regime models: specialists behind a regime classifier, each judged where it serves.

``market`` simulates a daily market with hidden regimes (calm, volatile, black swan) and GARCH
volatility clustering and turns it into feature rows; ``served_model`` is the pyfunc every
version serves (the classifier's regime and probabilities, a specialist's or the blend's
``p_up``); ``pipeline`` fits the four kinds; ``regime_metrics`` and ``regime_gate`` score and
judge them per regime; ``train`` registers one kind in MLflow.
"""
