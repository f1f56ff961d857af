"""KServe's model server for MLflow models, and what runs it locally, one process per revision.

:mod:`.server` is the process (``python -m controller.local.serving``), the same command a
custom ServingRuntime runs on a cluster; :mod:`.pyfunc_model` is what it does with an MLflow
model, free of ``kserve`` imports; :mod:`.launcher` starts one process per revision for the
local target and says whether it is loading, ready or failed; :mod:`.http1` is the HTTP/1.1
plumbing of the router (:mod:`controller.local.router`) that fronts those processes.
"""

__all__: list[str] = []
