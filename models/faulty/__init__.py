"""A deliberately bad model version: another version's predictions, with errors and latency.

A canary gate is only tested by a canary that deserves to fail. ``register`` logs a pyfunc
that wraps a real registered version, fails a set share of requests (the server answers 500)
and adds latency, and registers it as a new version of the same model, so a bad canary is an
ordinary model version that goes through the same Git, KServe and Prometheus path as a good one.
"""
