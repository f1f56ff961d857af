"""Sluice: a GitOps deployment controller for ML models.

A model version flows from the MLflow registry into a KServe manifest in Git, through a pull
request, and out to a cluster as a gated canary. Nothing is deployed around Git.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
