"""The content hash a training run logs of its holdout, shared by the example models.

Equal digests mean the same rows in the same order: a candidate and the champion were scored
on the same holdout, and two runs of the same arguments saw the same data.
"""

from __future__ import annotations

import hashlib

import pandas as pd

__all__ = ["frame_digest"]


def frame_digest(frame: pd.DataFrame) -> str:
    """Content hash of a frame: equal digests mean the same rows in the same order."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]
