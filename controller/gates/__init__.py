"""Gates: checks that turn what a canary did into pass, fail or inconclusive verdicts."""

__all__: list[str] = []
