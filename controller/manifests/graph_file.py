"""An InferenceGraph's file in an overlay: found by kind and name, read and written with ruamel.

A graph is committed as a file of the environment's overlay (``inference-graph.yaml`` in the
market-regime example), one document to the file. Sluice edits it as it edits a pin: a ruamel
round trip, so that comments, key order and quoting stay where the edit leaves them. The spec's
diff, which a graph proposal shows, is of the two graphs' ``spec`` as YAML, whatever file or
formatting each came from.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from controller.errors import ManifestInvalid
from controller.limits import PIN_FILE_MAX_BYTES
from controller.yaml_config import check_yaml_text

__all__ = [
    "INFERENCE_GRAPH",
    "dump_graph",
    "graph_name",
    "load_graph",
    "might_hold_graph",
    "spec_diff",
]

INFERENCE_GRAPH = "InferenceGraph"


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def might_hold_graph(text: str) -> bool:
    """Whether a file's text could be an InferenceGraph's (a cheap look before parsing)."""
    return INFERENCE_GRAPH in text


def load_graph(text: str, *, source: str) -> CommentedMap:
    """Parse a file holding one InferenceGraph, keeping comments; :class:`ManifestInvalid` if
    it is not one (or more than one document), is over the pin size limit or uses anchors."""
    check_yaml_text(
        text, label=source, limit=PIN_FILE_MAX_BYTES, kind="graph file", error=ManifestInvalid
    )
    try:
        documents = [d for d in _yaml().load_all(text) if d is not None]
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ManifestInvalid(f"{source}: malformed YAML{where}; fix the syntax") from None
    graphs = [
        d for d in documents if isinstance(d, CommentedMap) and d.get("kind") == INFERENCE_GRAPH
    ]
    if not graphs:
        raise ManifestInvalid(f"{source}: not an InferenceGraph manifest (kind: {INFERENCE_GRAPH})")
    if len(documents) > 1:
        raise ManifestInvalid(
            f"{source}: holds {len(documents)} YAML documents; keep the InferenceGraph in a "
            "file of its own"
        )
    document: CommentedMap = graphs[0]
    return document


def graph_name(document: Mapping[str, Any]) -> str:
    """The graph's ``metadata.name`` ("" when it has none)."""
    return str((document.get("metadata") or {}).get("name") or "")


def dump_graph(document: Mapping[str, Any]) -> str:
    """Serialise a graph with its comments, order and quoting."""
    buffer = io.StringIO()
    _yaml().dump(document, buffer)
    return buffer.getvalue()


def _spec_text(document: Mapping[str, Any]) -> list[str]:
    buffer = io.StringIO()
    spec = CommentedMap()
    spec["spec"] = document.get("spec")
    _yaml().dump(spec, buffer)
    return buffer.getvalue().splitlines(keepends=True)


def spec_diff(
    current: Mapping[str, Any], proposed: Mapping[str, Any], *, old_label: str, new_label: str
) -> str:
    """The unified diff of the two graphs' ``spec`` as YAML ("" when they are the same)."""
    return "".join(
        difflib.unified_diff(
            _spec_text(current), _spec_text(proposed), fromfile=old_label, tofile=new_label
        )
    )
