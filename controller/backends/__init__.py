"""Adapters between Sluice's core and the outside world, one module per backend.

Only modules in this package (and :mod:`controller.local`) import MLflow, PyGithub, GitPython,
Locust or KServe; each translates its library's exceptions into :mod:`controller.errors`.
"""

__all__: list[str] = []
