"""OpenMP limited to one thread while the example models fit and score their boosted trees.

The trees are small, and OpenMP's team of a thread per core waits, spinning, on cores other
processes hold: on two shared cores a fit took 2.5 times as long, and a fraud training run under
three CPU burners spent 3.9 CPU-seconds instead of 2.5. Sluice's local model servers run with
``OMP_NUM_THREADS=1`` for the same reason.
"""

from __future__ import annotations

from typing import Any

from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

__all__ = ["one_openmp_thread"]


def one_openmp_thread() -> Any:
    """A context in which OpenMP runs one thread (scikit-learn's boosted trees use it)."""
    return threadpool_limits(limits=1, user_api="openmp")
