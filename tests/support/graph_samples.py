"""InferenceGraphs for the graph tests: KServe's own samples, written out again, and Sluice's.

KServe's ``docs/samples/graph/`` has one graph per router type (``sequence.yaml``,
``switch.yaml``, ``ensemble.yaml``, ``splitter.yaml``) and a README with the switch sample's
input and the answers to expect. The objects below are equivalent to those graphs (the tests
do not read KServe's files); ``MARKET_REGIME`` is the graph of Sluice's issue: a classifier,
then a Switch on its answer, whose volatile branch blends an Ensemble.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = [
    "BY_ROUTE_SWITCH",
    "ENSEMBLE_SAMPLE",
    "MARKET_REGIME",
    "SEQUENCE_SAMPLE",
    "SPLITTER_SAMPLE",
    "SWITCH_SAMPLE",
    "SWITCH_SAMPLE_INPUT",
    "graph",
]


def graph(name: str, nodes: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    """An InferenceGraph object named ``name`` with ``nodes``."""
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": name, "namespace": "models-local", **metadata},
        "spec": {"nodes": copy.deepcopy(nodes)},
    }


#: ``sequence.yaml``: the second step gets the original request (``data: $request``).
SEQUENCE_SAMPLE = graph(
    "model-chainer",
    {
        "root": {
            "routerType": "Sequence",
            "steps": [
                {"serviceName": "sklearn-iris"},
                {"serviceName": "xgboost-iris", "data": "$request"},
            ],
        }
    },
)

#: ``switch.yaml``: object, array and pattern matching, with unquoted values (Go's gjson).
SWITCH_SAMPLE = graph(
    "model-switch",
    {
        "root": {
            "routerType": "Switch",
            "steps": [
                {
                    "serviceUrl": "http://single-1.default.example.com/switch",
                    "condition": "[@this].#(source==client)",
                },
                {
                    "serviceUrl": "http://single-2.default.example.com/switch",
                    "condition": "instances.#(intval>10)",
                },
                {
                    "serviceUrl": "http://single-3.default.example.com/switch",
                    "condition": "instances.#(strval%*red-server*)",
                },
            ],
        }
    },
)

#: The README's input for the switch sample: only the third condition matches it.
SWITCH_SAMPLE_INPUT: dict[str, Any] = {
    "source": "client1",
    "instances": [
        {"name": "blue", "intval": 0, "strval": "kserve"},
        {"name": "green", "intval": 1, "strval": "1red-server1"},
    ],
}

#: ``ensemble.yaml``: named steps, so the answer is keyed by those names.
ENSEMBLE_SAMPLE = graph(
    "ensemble-model",
    {
        "root": {
            "routerType": "Ensemble",
            "steps": [
                {"serviceName": "sklearn-iris", "name": "sklearn-iris"},
                {"serviceName": "xgboost-iris", "name": "xgboost-iris"},
            ],
        }
    },
)

#: ``splitter.yaml``: 20 % and 80 %.
SPLITTER_SAMPLE = graph(
    "splitter-model",
    {
        "root": {
            "routerType": "Splitter",
            "steps": [
                {"serviceName": "sklearn-iris", "weight": 20},
                {"serviceName": "xgboost-iris", "weight": 80},
            ],
        }
    },
)

#: The issue's graph: classify the regime, switch on it; volatile goes to an Ensemble of two
#: models whose answers a blender combines.
MARKET_REGIME = graph(
    "market-regime",
    {
        "root": {
            "routerType": "Sequence",
            "steps": [
                {"serviceName": "regime-classifier", "name": "classify"},
                {"nodeName": "by-regime", "name": "route", "data": "$response"},
            ],
        },
        "by-regime": {
            "routerType": "Switch",
            "steps": [
                {"nodeName": "black-swan", "condition": '[@this].#(regime=="volatile")'},
                {"serviceName": "calm-model", "condition": '[@this].#(regime=="calm")'},
            ],
        },
        "black-swan": {
            "routerType": "Sequence",
            "steps": [
                {"nodeName": "tail-models"},
                {"serviceName": "blender", "data": "$response", "dependency": "Hard"},
            ],
        },
        "tail-models": {
            "routerType": "Ensemble",
            "steps": [
                {"serviceName": "tail-risk", "name": "tail-risk", "dependency": "Hard"},
                {"serviceName": "momentum", "name": "momentum"},
            ],
        },
    },
)


#: A Switch between two members, alpha and beta, on the request's ``route`` field.
BY_ROUTE_SWITCH = graph(
    "by-route",
    {
        "root": {
            "routerType": "Switch",
            "steps": [
                {"serviceName": "alpha", "condition": '[@this].#(route=="a")'},
                {"serviceName": "beta", "condition": '[@this].#(route=="b")'},
            ],
        }
    },
)
