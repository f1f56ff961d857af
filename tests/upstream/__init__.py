"""Upstream files vendored verbatim (SOURCES.md), and their checker (:mod:`upstream.sources`)."""
