"""Where an environment's InferenceGraph is in Git: the overlay file whose document is the graph.

An overlay (``manifests/overlays/ENV/``) commits a graph as one of its files, named as the
team likes (``inference-graph.yaml`` in the market-regime example). It is found by what it
is, kind ``InferenceGraph`` with the graph's name, on the environment's branch as of the last
fetch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruamel.yaml.comments import CommentedMap

from controller.errors import ConfigError, ManifestInvalid
from controller.manifests.environment import ENVIRONMENT_FILE, EnvironmentConfig
from controller.manifests.graph_file import graph_name, load_graph, might_hold_graph
from controller.ports import ReleaseRepository
from controller.proposals.propose import read_environment

__all__ = ["GraphSource", "read_graph"]

_YAML = (".yaml", ".yml")


@dataclass(frozen=True)
class GraphSource:
    """An environment's graph as its branch holds it."""

    config: EnvironmentConfig
    #: ``manifests/overlays/ENV``.
    overlay: str
    #: The file that holds the graph, from the repository's root.
    path: str
    document: CommentedMap

    @property
    def branch(self) -> str:
        return self.config.branch


def read_graph(workspace: ReleaseRepository, environment: str, graph: str) -> GraphSource:
    """Graph ``graph`` of ``environment`` (call after a sync); :class:`ConfigError` naming the
    graphs the overlay has when none is named so."""
    config = read_environment(workspace, environment)
    overlay = f"manifests/overlays/{config.name}"
    names = sorted(workspace.list_dir(config.branch, overlay))
    paths = [f"{overlay}/{n}" for n in names if n.endswith(_YAML) and n != ENVIRONMENT_FILE]
    found: list[tuple[str, CommentedMap]] = []
    others: list[str] = []
    for path, text in workspace.read_many(config.branch, paths).items():
        if text is None or not might_hold_graph(text):
            continue
        source = f"{path}@{config.branch}"
        try:
            document = load_graph(text, source=source)
        except ManifestInvalid:
            if f"name: {graph}" in text:
                raise
            continue
        if graph_name(document) == graph:
            found.append((path, document))
        else:
            others.append(graph_name(document))
    if not found:
        known = ", ".join(sorted(others)) or "none"
        raise ConfigError(
            f"unknown InferenceGraph {graph!r} in {config.name}: no file of {overlay} on "
            f"{config.branch} holds it (graphs there: {known}); name one of them, or commit "
            "the graph to the overlay first"
        )
    if len(found) > 1:
        raise ManifestInvalid(
            f"InferenceGraph {graph!r} is in more than one file of {overlay} "
            f"({', '.join(p for p, _ in found)}); keep one"
        )
    path, document = found[0]
    return GraphSource(config, overlay, path, document)
