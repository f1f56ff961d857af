"""The soak: a version served 100 % upstream for a while, watched, then signed ``soak`` evidence.

Issue #19's ``soak`` evidence says a version "served at 100 % in ENV for T without a drift
alert, KPI regression or error-budget burn", with the window's numbers. The duration is the
downstream environment's (``promotion.require.soak: 24h``); what is watched is the upstream
environment's own ``soak:`` block (:mod:`~controller.soak.policy`). A pure decision
(:mod:`~controller.soak.decide`) says, from the promote commit's time, the clock, the alerts
recorded since and the checks' readings, whether the version is soaking, broken or complete;
:mod:`~controller.soak.checks` reads the checks through the
:class:`~controller.ports.MetricsSource` port, and :mod:`~controller.soak.watch` is the pass
``sluice serve`` runs per upstream environment, recording the evidence once.
"""

__all__: list[str] = []
