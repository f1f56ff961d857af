"""The diabetes example's training data as its team would check it: a pandera suite of their own.

Sluice runs it in place of its own data contract (``training.validate_frame``): a violation
stops training before MLflow sees anything, in the suite's own words, and the pass (its name,
its checks, the rows they covered) is what the version's provenance attestation records.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

__all__ = ["FEATURES", "TARGET", "DiabetesData"]

FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
TARGET = "target"


def _scaled() -> float:
    """A baseline measurement as the study publishes it: centred and scaled, within +-0.25."""
    return pa.Field(in_range={"min_value": -0.25, "max_value": 0.25})  # type: ignore[no-any-return]


class DiabetesData(pa.DataFrameModel):
    """Ten scaled baseline measurements and the disease progression a year later."""

    age: Series[float] = _scaled()
    sex: Series[float] = _scaled()
    bmi: Series[float] = _scaled()
    bp: Series[float] = _scaled()
    s1: Series[float] = _scaled()
    s2: Series[float] = _scaled()
    s3: Series[float] = _scaled()
    s4: Series[float] = _scaled()
    s5: Series[float] = _scaled()
    s6: Series[float] = _scaled()
    target: Series[float]

    class Config:
        name = "diabetes training data"

    @pa.check(TARGET, error="disease progression is a score from 25 to 346")
    def progression_is_a_score(cls, target: Series[float]) -> Series[bool]:  # noqa: N805
        return target.between(25, 346)

    @pa.dataframe_check(error="at least 100 patients")
    def enough_patients(cls, frame: pd.DataFrame) -> bool:  # noqa: N805
        return len(frame) >= 100
