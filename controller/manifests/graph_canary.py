"""A change to an InferenceGraph as a canary: both graphs in one, split at the root.

Changing a graph (a new branch, another condition, an Ensemble's members) changes how every
request is routed, so it is rolled out as a model version is: the environment's graph becomes
its **canary form**, in which a Splitter at ``root`` sends ``100 - W`` % of the requests to the
current graph (``stable``) and ``W`` % to the proposed one (``canary``)::

    root:            Splitter  [stable: 100 - W, canary: W]
    stable:          the current graph's root
    <node>:          the current graph's other nodes, as they are
    canary:          the proposed graph's root
    canary-<node>:   the proposed graph's other nodes, every nodeName rewritten to match

annotated ``sluice.dev/graph-canary: <digest of the proposed spec>`` and
``sluice.dev/graph-canary-weight: "W"``. It is an ordinary InferenceGraph (KServe's router
needs nothing new), and it holds both graphs whole, so that moving the weight
(:func:`with_canary_weight`), promoting (:func:`promoted`: the proposed graph alone) and rolling
back (:func:`restored`: the current graph alone, exactly as it was) are functions of the canary
form alone. Each is pure: documents in (plain dicts or ruamel's commented maps, left unchanged),
a new document out, of the same mapping types, so that a round trip keeps comments and order
where it can.

Only ``spec.nodes`` may differ between the two graphs: one router serves the canary form, so
the router's own settings (``spec.timeout``, ``routerTimeouts``, scaling, ...) cannot be
canaried and are refused (change them in a commit of their own).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from controller.errors import InputError
from controller.manifests.inference_graph import ROOT_NODE
from controller.manifests.manifest import ANNOTATION_PREFIX

__all__ = [
    "CANARY",
    "CANARY_ANNOTATION",
    "CANARY_PREFIX",
    "STABLE",
    "WEIGHT_ANNOTATION",
    "GraphCanary",
    "canary_form",
    "canary_state",
    "check_weight",
    "node_changes",
    "promoted",
    "restored",
    "spec_digest",
    "with_canary_weight",
]

#: The Splitter's step (and node) that the current graph's root becomes.
STABLE = "stable"
#: The Splitter's step (and node) that the proposed graph's root becomes.
CANARY = "canary"
#: The prefix of the proposed graph's other nodes.
CANARY_PREFIX = "canary-"
CANARY_ANNOTATION = f"{ANNOTATION_PREFIX}graph-canary"
WEIGHT_ANNOTATION = f"{ANNOTATION_PREFIX}graph-canary-weight"
_DIGEST_LENGTH = 10


@dataclass(frozen=True)
class GraphCanary:
    """What a graph's canary form says: the proposed spec's digest and the canary's weight."""

    digest: str
    weight: int


def spec_digest(document: Mapping[str, Any]) -> str:
    """A short digest of the graph's ``spec`` (key order and formatting do not count)."""
    spec = json.dumps(_plain(document.get("spec") or {}), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(spec.encode()).hexdigest()[:_DIGEST_LENGTH]


def check_weight(weight: int) -> int:
    """``weight`` if a canary can take it: 1 to 99 (100 is a promotion, 0 a rollback)."""
    if not 1 <= weight <= 99:
        raise InputError(
            f"a graph canary's weight must be 1 to 99, not {weight}; promote it for 100 "
            "(sluice graph promote), roll it back for 0 (sluice graph rollback)"
        )
    return weight


def canary_state(document: Mapping[str, Any]) -> GraphCanary | None:
    """The canary the graph is in the canary form of, or None for a graph on its own."""
    annotations = _annotations(document)
    digest = annotations.get(CANARY_ANNOTATION)
    if digest is None:
        return None
    return GraphCanary(str(digest), _canary_weight(document))


def canary_form(
    current: Mapping[str, Any], proposed: Mapping[str, Any], weight: int
) -> MutableMapping[str, Any]:
    """The canary form of ``proposed`` beside ``current`` at ``weight`` % (see the module)."""
    check_weight(weight)
    if canary_state(current) is not None:
        raise InputError(
            f"InferenceGraph {_name(current)} is already in canary form; promote or roll back "
            "that canary first"
        )
    _check_only_nodes_differ(current, proposed)
    old_nodes, new_nodes = _nodes(current), _nodes(proposed)
    clash = sorted(n for n in old_nodes if n in (STABLE, CANARY) or n.startswith(CANARY_PREFIX))
    if clash:
        raise InputError(
            f"InferenceGraph {_name(current)}: node {clash[0]!r} clashes with the canary form's "
            f"names ({STABLE}, {CANARY}, {CANARY_PREFIX}*); rename it in a commit of its own "
            "first"
        )
    result = _copy(current)
    nodes = _empty_like(old_nodes)
    nodes[ROOT_NODE] = _splitter(old_nodes, weight)
    for name, node in old_nodes.items():
        nodes[_stable_name(name)] = _renamed_targets(node, _stable_name)
    for name, node in new_nodes.items():
        nodes[_canary_name(name)] = _renamed_targets(node, _canary_name)
    result["spec"]["nodes"] = nodes
    annotations = _ensure_annotations(result)
    annotations[CANARY_ANNOTATION] = _quoted_like(annotations, spec_digest(proposed))
    annotations[WEIGHT_ANNOTATION] = _quoted_like(annotations, str(weight))
    return result


def with_canary_weight(document: Mapping[str, Any], weight: int) -> MutableMapping[str, Any]:
    """The canary form with the canary at ``weight`` % and the stable graph at the rest."""
    check_weight(weight)
    _require_canary(document)
    result = _copy(document)
    for step in result["spec"]["nodes"][ROOT_NODE]["steps"]:
        step["weight"] = weight if step.get("nodeName") == CANARY else 100 - weight
    annotations = _ensure_annotations(result)
    annotations[WEIGHT_ANNOTATION] = _quoted_like(annotations, str(weight))
    return result


def promoted(document: Mapping[str, Any]) -> MutableMapping[str, Any]:
    """The proposed graph alone: ``canary`` becomes ``root``, ``canary-X`` ``X``, the stable
    graph's nodes are dropped, and so are the canary annotations."""
    _require_canary(document)

    def original(name: str) -> str:
        return ROOT_NODE if name == CANARY else name.removeprefix(CANARY_PREFIX)

    def is_canary(name: str) -> bool:
        return name == CANARY or name.startswith(CANARY_PREFIX)

    return _one_graph(document, is_canary, original)


def restored(document: Mapping[str, Any]) -> MutableMapping[str, Any]:
    """The current graph alone, as it was before the canary: ``stable`` becomes ``root``, the
    canary's nodes are dropped, and so are the canary annotations."""
    _require_canary(document)

    def original(name: str) -> str:
        return ROOT_NODE if name == STABLE else name

    def is_stable(name: str) -> bool:
        return name != ROOT_NODE and name != CANARY and not name.startswith(CANARY_PREFIX)

    return _one_graph(document, is_stable, original)


def node_changes(current: Mapping[str, Any], proposed: Mapping[str, Any]) -> list[str]:
    """Which nodes the proposed graph changes, adds and removes, one line each."""
    old, new = _nodes(current), _nodes(proposed)
    lines = [
        f"{name}: added" if name not in old else f"{name}: changed"
        for name in new
        if name not in old or _plain(old[name]) != _plain(new[name])
    ]
    return lines + [f"{name}: removed" for name in old if name not in new]


# -- the parts -----------------------------------------------------------------------------


def _one_graph(
    document: Mapping[str, Any], keep: Callable[[str], bool], original: Callable[[str], str]
) -> MutableMapping[str, Any]:
    result = _copy(document)
    old_nodes = _nodes(result)
    nodes = _empty_like(old_nodes)
    kept = [(original(name), node) for name, node in old_nodes.items() if keep(name)]
    # root first, the others in the order they had
    for name, node in sorted(kept, key=lambda item: item[0] != ROOT_NODE):
        nodes[name] = _renamed_targets(node, original)
    result["spec"]["nodes"] = nodes
    metadata = result["metadata"]
    annotations = metadata.get("annotations")
    if annotations is not None:
        annotations.pop(CANARY_ANNOTATION, None)
        annotations.pop(WEIGHT_ANNOTATION, None)
        if not annotations:
            del metadata["annotations"]
    return result


def _copy(document: Mapping[str, Any]) -> MutableMapping[str, Any]:
    """A deep copy (a ruamel map keeps its comments)."""
    return cast(MutableMapping[str, Any], copy.deepcopy(document))


def _splitter(like: Mapping[str, Any], weight: int) -> MutableMapping[str, Any]:
    node = _empty_like(like)
    node["routerType"] = "Splitter"
    steps = []
    for name, share in ((STABLE, 100 - weight), (CANARY, weight)):
        step = _empty_like(like)
        step["name"], step["nodeName"], step["weight"] = name, name, share
        steps.append(step)
    node["steps"] = steps
    return node


def _stable_name(name: str) -> str:
    return STABLE if name == ROOT_NODE else name


def _canary_name(name: str) -> str:
    return CANARY if name == ROOT_NODE else f"{CANARY_PREFIX}{name}"


def _renamed_targets(node: Mapping[str, Any], rename: Callable[[str], str]) -> Any:
    """A copy of ``node`` whose steps' ``nodeName`` targets are renamed."""
    copied = copy.deepcopy(node)
    for step in copied.get("steps") or []:
        target = step.get("nodeName")
        if target:
            step["nodeName"] = rename(target)
    return copied


def _require_canary(document: Mapping[str, Any]) -> GraphCanary:
    state = canary_state(document)
    nodes = _nodes(document)
    root = nodes.get(ROOT_NODE) or {}
    targets = sorted(str(s.get("nodeName")) for s in root.get("steps") or [])
    if state is None or root.get("routerType") != "Splitter" or targets != [CANARY, STABLE]:
        raise InputError(
            f"InferenceGraph {_name(document)} is not in canary form (no {CANARY_ANNOTATION} "
            f"annotation and {STABLE}/{CANARY} Splitter at its root); propose a change first "
            "(sluice graph propose)"
        )
    return state


def _check_only_nodes_differ(current: Mapping[str, Any], proposed: Mapping[str, Any]) -> None:
    old = {k: _plain(v) for k, v in (current.get("spec") or {}).items() if k != "nodes"}
    new = {k: _plain(v) for k, v in (proposed.get("spec") or {}).items() if k != "nodes"}
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        raise InputError(
            f"InferenceGraph {_name(current)}: the proposed spec changes spec.{changed[0]}, "
            "which one router serves for both graphs and cannot be canaried; change only "
            f"spec.nodes, and spec.{changed[0]} in a commit of its own"
        )


def _canary_weight(document: Mapping[str, Any]) -> int:
    root = _nodes(document).get(ROOT_NODE) or {}
    for step in root.get("steps") or []:
        if step.get("nodeName") == CANARY:
            return int(step.get("weight") or 0)
    return int(_annotations(document).get(WEIGHT_ANNOTATION, 0))


def _nodes(document: Mapping[str, Any]) -> Mapping[str, Any]:
    return (document.get("spec") or {}).get("nodes") or {}


def _annotations(document: Mapping[str, Any]) -> Mapping[str, Any]:
    return (document.get("metadata") or {}).get("annotations") or {}


def _ensure_annotations(document: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    metadata = document["metadata"]
    if metadata.get("annotations") is None:
        metadata["annotations"] = _empty_like(metadata)
    annotations: MutableMapping[str, Any] = metadata["annotations"]
    return annotations


def _empty_like(mapping: Mapping[str, Any]) -> MutableMapping[str, Any]:
    """A new empty mapping of ``mapping``'s type (a ruamel map stays one)."""
    try:
        made = type(mapping)()
    except TypeError:
        return {}
    return made if isinstance(made, MutableMapping) else {}


def _quoted_like(annotations: Mapping[str, Any], value: str) -> str:
    """``value`` double-quoted in YAML when the document is ruamel's (an annotation is text)."""
    if isinstance(annotations, CommentedMap):
        quoted: str = DoubleQuotedScalarString(value)
        return quoted
    return value


def _name(document: Mapping[str, Any]) -> str:
    return str((document.get("metadata") or {}).get("name", "?"))


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data (ruamel's maps, sequences and scalars included)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)
