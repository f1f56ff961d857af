"""Proposals: a registry version becomes a reviewed pull request on an environment's pin (the
model card it carries, the serve loop's scan for moved aliases) and quarantine holds one back."""

__all__: list[str] = []
