"""The text Sluice writes where people read it: commit messages, Markdown bodies, branch names,
and templates filled strictly, all within what Git and GitHub accept."""

__all__: list[str] = []
