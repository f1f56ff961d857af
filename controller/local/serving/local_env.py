"""The environment every local model server runs with, whether started cold or forked warm.

Several model servers share one machine: OpenMP's one-thread-per-core default (used by
scikit-learn's boosted trees) oversubscribes it and triples the latency of a prediction. OpenMP
and OpenBLAS read it once, when they are loaded, so the fork server of warm starts
(:mod:`controller.local.serving.preload`) sets it before it imports them.
"""

__all__ = ["LOCAL_ENV"]

LOCAL_ENV = {"OMP_NUM_THREADS": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
