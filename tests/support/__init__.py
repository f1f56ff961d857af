"""Support code for Sluice's tests: the local GitHub API server and what it needs."""
