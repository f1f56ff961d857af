"""What ``sluice serve`` runs besides the rollouts: the loop that notices a moved registry alias,
and the HTTP side (health, metrics, the registry's and Alertmanager's webhooks, late ground
truth) on its transport."""

__all__: list[str] = []
