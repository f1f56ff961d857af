"""Evidence: what a version earned in an environment, signed by that environment's controller.

Promotion by evidence (issue #19): each decisive event of a rollout (promoted after the canary
steps, a shadow verdict, a soak at 100 %, the production pull request's approval, an override
by hand) becomes an in-toto Statement v1 with the predicate type
``https://sluice.dev/evidence/v1``, bound to the version's exact bytes (the same subjects as
its provenance) and signed as a DSSE envelope with the controller's own Ed25519 key. The
production environment's ``promotion:`` policy says which evidence a version needs before it
is proposed there. The modules here are the pure parts: the statement and its schema
(:mod:`~controller.evidence.statement`), the controller's key
(:mod:`~controller.evidence.signing`), verification piece by piece
(:mod:`~controller.evidence.verify`), the policy (:mod:`~controller.evidence.policy`) and
its evaluation (:mod:`~controller.evidence.evaluate`). The store is a port
(:class:`~controller.ports.EvidenceStore`); :mod:`~controller.evidence.record` records and
checks a version's evidence through it, the calls the rollout and a proposal make.
"""

__all__: list[str] = []
