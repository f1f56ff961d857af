"""Validate a KServe InferenceGraph before it is committed, as the API server and KServe would.

An InferenceGraph (``serving.kserve.io/v1alpha1``) is committed beside the InferenceServices it
routes between. Argo CD applies it with the cluster's checks: the API server validates it
against the CRD's schema (and, with strict field validation, refuses a field the schema does
not know, where it would otherwise drop it silently: a misspelt ``stepName`` for ``name`` would
turn an Ensemble's keys into indexes), then KServe's validating webhook applies its rules
(``validateInferenceGraph`` in ``pkg/apis/serving/v1alpha1/inference_graph_validation.go``): a
DNS-1035 name, a node named ``root``, step names unique within a node, exactly one target per
step, and a Splitter's weights present and summing to 100.

Sluice adds two rules of its own, each for a graph every request to which would fail: a
``nodeName`` that names no node (KServe's router answers 500 "invalid route type") and nodes
that reach themselves (its router recurses until it dies). Each problem is one line naming the
file, the field and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from controller.errors import ManifestInvalid
from controller.manifests.schema_problem import first_schema_problem
from controller.schemas import inferencegraph_schema

# jsonschema (about 30 ms of CPU) loads on the first validation, not with every command that
# imports this module on its way elsewhere.
if TYPE_CHECKING:
    from jsonschema import Draft7Validator

__all__ = [
    "ROOT_NODE",
    "inferencegraph_admission_errors",
    "strict_schema",
    "validate_inferencegraph",
]

#: The node every request enters (KServe's ``GraphRootNodeName``).
ROOT_NODE = "root"
#: KServe's ``GraphNameFmt``.
_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_TARGETS = ("nodeName", "serviceName", "serviceUrl")


def strict_schema(schema: Any) -> Any:
    """The schema refusing unknown fields wherever it lists the known ones, as the API server's
    strict field validation does (a map, ``additionalProperties``, or a subtree that preserves
    unknown fields is left as it is)."""
    if isinstance(schema, dict):
        out = {key: strict_schema(value) for key, value in schema.items()}
        preserved = out.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in out and "additionalProperties" not in out and not preserved:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    return schema


@cache
def _validator() -> Draft7Validator:
    from jsonschema import Draft7Validator  # on first use: see the imports

    return Draft7Validator(strict_schema(inferencegraph_schema()))


def validate_inferencegraph(
    document: Mapping[str, Any], *, source: str, sluice_rules: bool = True
) -> None:
    """Check one InferenceGraph against KServe's CRD schema (strictly) and its webhook's rules,
    then Sluice's unless ``sluice_rules`` is False (the local target's API server admits what
    a cluster's would); :class:`ManifestInvalid` with the first problem, in one line."""
    problem = first_schema_problem(_validator(), document)
    if problem is not None:
        raise ManifestInvalid(f"{source}: {problem.line('InferenceGraph')}; {_fix(problem.error)}")
    refused = inferencegraph_admission_errors(document, sluice_rules=sluice_rules)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise ManifestInvalid(f"{source}: InferenceGraph {refused[0]}{more}")


def _fix(error: Any) -> str:
    """What to do about a schema error: for an unknown field, the fields that are known."""
    if error.validator == "additionalProperties" and isinstance(error.schema, dict):
        known = ", ".join(sorted(error.schema.get("properties", {})))
        return f"remove it or use one of: {known}"
    return "fix the manifest"


def inferencegraph_admission_errors(
    document: Mapping[str, Any], *, sluice_rules: bool = True
) -> list[str]:
    """KServe's webhook rules, then Sluice's (unless ``sluice_rules`` is False), on a
    schema-valid InferenceGraph: one line each (KServe's message, then what to do)."""
    name = str((document.get("metadata") or {}).get("name", ""))
    nodes: Mapping[str, Any] = (document.get("spec") or {}).get("nodes") or {}
    kserve = " (KServe's webhook refuses it)"
    problems: list[str] = []
    if not _NAME.fullmatch(name):
        problems.append(
            f'metadata.name: "{name}" must consist of lower case alphanumeric characters or '
            f"'-' and start with a letter (regex '{_NAME.pattern}'){kserve}; rename the graph"
        )
    if ROOT_NODE not in nodes:
        problems.append(
            f"spec.nodes: root node not found, InferenceGraph needs a node named "
            f"'{ROOT_NODE}'{kserve}; name the entry node {ROOT_NODE}"
        )
    for node_name, node in nodes.items():
        problems += [
            f"spec.nodes.{node_name}.{problem}"
            for problem in _node_errors(name, node_name, node, kserve)
        ]
    if sluice_rules:
        problems += _reference_errors(nodes)
    return problems


def _node_errors(graph: str, node_name: str, node: Mapping[str, Any], kserve: str) -> list[str]:
    steps: list[Mapping[str, Any]] = node.get("steps") or []
    problems: list[str] = []
    seen: set[str] = set()
    for index, step in enumerate(steps):
        step_name = step.get("name", "")
        if step_name and step_name in seen:
            problems.append(
                f'steps.{index}.name: node "{node_name}" of InferenceGraph "{graph}" contains '
                f'more than one step named "{step_name}"{kserve}; give each step its own name'
            )
        seen.add(step_name)
        targets = [key for key in _TARGETS if step.get(key)]
        if len(targets) != 1:
            what = "no" if not targets else f"more than one ({', '.join(targets)})"
            problems.append(
                f"steps.{index}: step {index} specifies {what} inference target{kserve}; "
                f"give it exactly one of {', '.join(_TARGETS)}"
            )
    if node.get("routerType") == "Splitter":
        problems += _splitter_errors(steps, kserve)
    return problems


def _splitter_errors(steps: list[Mapping[str, Any]], kserve: str) -> list[str]:
    missing = [index for index, step in enumerate(steps) if step.get("weight") is None]
    if missing:
        return [
            f"steps.{index}.weight: a Splitter step is missing its 'weight'{kserve}; give every "
            "step a weight, the weights summing to 100"
            for index in missing
        ]
    total = sum(int(step["weight"]) for step in steps)
    if total != 100:
        return [
            f"steps: the Splitter's weights sum to {total}, not 100{kserve}; make them sum to 100"
        ]
    return []


def _reference_errors(nodes: Mapping[str, Any]) -> list[str]:
    """Sluice's rules: every ``nodeName`` names a node, and no node reaches itself."""
    problems: list[str] = []
    edges: dict[str, list[str]] = {}
    for node_name, node in nodes.items():
        edges[node_name] = []
        for index, step in enumerate(node.get("steps") or []):
            target = step.get("nodeName")
            if not target:
                continue
            if target not in nodes:
                problems.append(
                    f"spec.nodes.{node_name}.steps.{index}.nodeName: no node is named "
                    f'"{target}" (KServe accepts it, but its router answers 500 to every '
                    f"request reaching this step); name one of: {', '.join(sorted(nodes))}"
                )
            else:
                edges[node_name].append(target)
    cycle = _cycle(edges)
    if cycle:
        problems.append(
            f"spec.nodes: the nodes form a loop ({' -> '.join(cycle)}; KServe accepts it, but "
            "its router recurses until it fails); break the loop"
        )
    return problems


def _cycle(edges: Mapping[str, list[str]]) -> list[str]:
    """One loop of ``edges`` as the path around it (first node repeated at the end), or []."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        for target in edges.get(node, []):
            found = visit(target, [*path, node])
            if found:
                return found
        done.add(node)
        return []

    for start in sorted(edges):
        found = visit(start, [])
        if found:
            return found
    return []
