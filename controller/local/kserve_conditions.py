"""KServe's and Knative's conditions for an InferenceService in Serverless mode, as their
controllers set them: knative/pkg's living condition set (the happy condition follows its
dependents), Knative's service Ready, KServe's propagation onto the InferenceService
(``PropagateStatus``, ``PropagateCrossComponentStatus``) and the transition time stamps."""

from __future__ import annotations

from dataclasses import replace

from controller.local.kserve_status_values import (
    FALSE,
    TRUE,
    UNKNOWN,
    Condition,
    Revision,
    RevisionState,
)

__all__ = ["NO_INGRESS", "configuration_ready", "isvc_conditions", "stamp_conditions"]

# KServe's InferenceService condition set: Ready is happy when these are (Serverless mode).
_ISVC_DEPENDENTS = ("PredictorReady", "IngressReady")
# Knative's Service condition set.
_KSVC_DEPENDENTS = ("ConfigurationsReady", "RoutesReady")
#: The reason IngressReady gives while the predictor is not ready.
NO_INGRESS = "Predictor ingress not created"


class _ConditionSet:
    """knative/pkg's living condition set: the happy condition follows its dependents."""

    def __init__(self, happy: str, dependents: tuple[str, ...]) -> None:
        self.happy = happy
        self.dependents = dependents
        self.conditions = {t: Condition(t, UNKNOWN) for t in (happy, *dependents)}

    def _set(self, t: str, status: str, reason: str = "", message: str = "") -> None:
        severity = "" if t == self.happy or t in self.dependents else "Info"
        self.conditions[t] = Condition(t, status, reason, message, severity)

    def mark(self, c: Condition, type_: str | None = None) -> None:
        """KServe's ``SetCondition``: copy ``c``'s status (and reason) onto ``type_``."""
        t = type_ or c.type
        if c.status == TRUE:
            self._set(t, TRUE)
            if all(self.conditions[d].status == TRUE for d in self.dependents):
                self._set(self.happy, TRUE)
        elif c.status == FALSE:
            self._set(t, FALSE, c.reason, c.message)
            if t in self.dependents:
                self._set(self.happy, FALSE, c.reason, c.message)
        else:
            self._set(t, UNKNOWN, c.reason, c.message)
            if any(self.conditions[d].status == FALSE for d in self.dependents):
                if self.conditions[self.happy].status != FALSE:
                    self._set(self.happy, FALSE, c.reason, c.message)
            elif t in self.dependents:
                self._set(self.happy, UNKNOWN, c.reason, c.message)


def configuration_ready(revisions: list[Revision]) -> Condition:
    """Knative's ConfigurationsReady, from the latest revision's state."""
    latest = revisions[-1]
    if latest.state is RevisionState.READY:
        return Condition("ConfigurationsReady", TRUE)
    if latest.state is RevisionState.FAILED:
        message = f'Revision "{latest.name}" failed with message: {latest.message}.'
        return Condition("ConfigurationsReady", FALSE, "RevisionFailed", message)
    return Condition("ConfigurationsReady", UNKNOWN)


def isvc_conditions(config: Condition, route: Condition) -> dict[str, Condition]:
    """Knative's service Ready, then KServe's propagation onto the InferenceService."""
    ksvc = _ConditionSet("Ready", _KSVC_DEPENDENTS)
    ksvc.mark(config)
    ksvc.mark(route)
    isvc = _ConditionSet("Ready", _ISVC_DEPENDENTS)
    isvc.mark(ksvc.conditions["Ready"], "PredictorReady")
    isvc.mark(route, "PredictorRouteReady")
    isvc.mark(config, "PredictorConfigurationReady")
    for cross, part in (
        ("RoutesReady", "PredictorRouteReady"),
        ("LatestDeploymentReady", "PredictorConfigurationReady"),
    ):
        status = isvc.conditions[part].status
        isvc.mark(Condition(cross, status, "" if status == TRUE else f"{part} not ready"))
    predictor = isvc.conditions["PredictorReady"].status
    ingress = TRUE if predictor == TRUE else predictor
    isvc.mark(Condition("IngressReady", ingress, "" if ingress == TRUE else NO_INGRESS))
    return isvc.conditions


def stamp_conditions(
    conditions: dict[str, Condition], previous: tuple[Condition, ...], now: str
) -> tuple[Condition, ...]:
    """Sort by type (as Knative does) and keep a transition time while a condition holds."""
    held = {replace(c, last_transition_time=""): c.last_transition_time for c in previous}
    return tuple(
        replace(c, last_transition_time=held.get(c, now))
        for c in sorted(conditions.values(), key=lambda c: c.type)
    )
