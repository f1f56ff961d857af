"""A notifier that keeps what it is sent, for assertions on the announcements."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Notification", "RecordingNotifier"]


@dataclass(frozen=True)
class Notification:
    """One event a notifier was sent."""

    title: str
    text: str
    severity: str


@dataclass
class RecordingNotifier:
    """A :class:`~controller.ports.Notifier` that keeps every event, in order."""

    events: list[Notification] = field(default_factory=list)

    def notify(self, title: str, text: str, *, severity: str = "info") -> None:
        """Record the event."""
        self.events.append(Notification(title, text, severity))
