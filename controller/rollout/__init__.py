"""Rollout: walk a merged version through its canary steps, gated, and act only through Git.

``observe`` reads Git, the registry and the target into plain values; ``decide`` (pure) picks
one action; ``act`` carries it out as a commit, a registry change or a PR comment. Every pass
re-derives its state from those three places, so a controller killed at any line and run
again reaches the same end.
"""

__all__: list[str] = []
