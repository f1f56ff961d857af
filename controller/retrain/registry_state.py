"""A release's retraining state in the registry: tags on the registered model.

``sluice.retrain.ENV.requested_at`` (the cool-down), ``sluice.retrain.ENV.last`` and
``sluice.retrain.ENV.turned_away`` (:class:`~controller.retrain.record.RetrainRecord` as JSON),
read and written through the :class:`~controller.ports.ModelTagStore` port.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from controller.ports import ModelTagStore
from controller.retrain.record import (
    RetrainRecord,
    cooldown_tag,
    iso_time,
    last_retrain_tag,
    parse_time,
    turned_away_tag,
)

__all__ = ["RegistryCooldown"]

log = logging.getLogger("sluice.retrain")


class RegistryCooldown:
    """A release's retraining state, kept as registry tags on the registered model."""

    def __init__(self, tags: ModelTagStore) -> None:
        self._tags = tags

    def read(self, model: str, environment: str) -> tuple[float | None, RetrainRecord | None]:
        """When a retraining last started (None if never) and the last turn-away record."""
        tags = self._tags.registered_model_tags(model)
        return (
            self._started(tags, model, environment),
            RetrainRecord.decode(tags.get(turned_away_tag(environment))),
        )

    def last_started(self, model: str, environment: str) -> float | None:
        """Unix time of the last start, None if never (or the tag is unreadable)."""
        return self._started(self._tags.registered_model_tags(model), model, environment)

    @staticmethod
    def _started(tags: Mapping[str, str], model: str, environment: str) -> float | None:
        text = tags.get(cooldown_tag(environment))
        if not text:
            return None
        when = parse_time(text)
        if when is None:
            log.warning(
                "ignoring tag %s=%r of %s: not a time", cooldown_tag(environment), text, model
            )
        return when

    def last_record(self, model: str, environment: str) -> RetrainRecord | None:
        """The last retraining of the pair."""
        tags = self._tags.registered_model_tags(model)
        return RetrainRecord.decode(tags.get(last_retrain_tag(environment)))

    def record(self, model: str, environment: str, when: float) -> None:
        """Remember that a retraining started at ``when`` (Unix time)."""
        self._tags.set_registered_model_tag(model, cooldown_tag(environment), iso_time(when))

    def save(self, model: str, environment: str, record: RetrainRecord) -> None:
        """Keep ``record`` as the pair's last retraining."""
        self._tags.set_registered_model_tag(model, last_retrain_tag(environment), record.encode())

    def save_turned_away(self, model: str, environment: str, record: RetrainRecord) -> None:
        """Keep ``record`` as the pair's last alert turned away."""
        self._tags.set_registered_model_tag(model, turned_away_tag(environment), record.encode())
