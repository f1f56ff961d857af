"""What Sluice tells a training step it starts, as the example models read it: ``--since TIME``
(train on the newest data, from when the drift alert started) and why it retrains, in the
environment (``SLUICE_RETRAIN_REASON``, ``SLUICE_DRIFTED_FEATURES``, ``SLUICE_RETRAIN_SINCE``,
``SLUICE_DRIFTED_VERSION``), which a version keeps as ``sluice.retrain.*`` tags."""

from __future__ import annotations

import argparse
import os
from datetime import datetime

__all__ = ["retrain_tags", "since_time"]

_TAGS = {
    "SLUICE_RETRAIN_REASON": "sluice.retrain.reason",
    "SLUICE_DRIFTED_FEATURES": "sluice.retrain.features",
    "SLUICE_RETRAIN_SINCE": "sluice.retrain.since",
    "SLUICE_DRIFTED_VERSION": "sluice.retrain.drifted_version",
}


def since_time(text: str) -> str:
    """``--since``'s argument, checked to be an ISO 8601 time (argparse's ``type=``)."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (2025-06-15T15:06:40+00:00)"
        ) from None
    return text


def retrain_tags() -> dict[str, str]:
    """Why Sluice retrains, from the environment it gives the retrain command, as tags."""
    return {tag: os.environ[name][:500] for name, tag in _TAGS.items() if os.environ.get(name)}
