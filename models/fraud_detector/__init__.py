"""Card-fraud detector: the example model of Sluice's loop.

``data`` makes synthetic weekly transactions whose distribution shifts week to week, ``contract``
says what valid training data looks like, ``train`` trains, evaluates against the champion and
registers a version in MLflow.
"""
