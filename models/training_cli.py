"""How an example model's ``train`` command ends, shared by the example models: a Sluice error
becomes one line on stderr and its exit code; a result is printed as JSON (``--json``) or as the
model's own table, and the exit code says whether the quality gate passed."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, ClassVar, Protocol

from controller.errors import ExitCode, SluiceError
from controller.redact import redact

__all__ = ["GatedResult", "finish"]


class GatedResult(Protocol):
    """What every example's training result is: a dataclass with the gate's verdict."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def gate_passed(self) -> bool: ...


def finish(
    train: Callable[[], GatedResult],
    *,
    as_json: bool,
    report: str,
) -> int:
    """Run ``train`` and report it; ``report`` names the module whose ``print_result`` prints
    the table, imported only when the table is wanted (rich stays out of a ``--json`` run)."""
    try:
        result = train()
    except SluiceError as exc:
        sys.stderr.write(f"train: error: {redact(exc.message)}\n")
        return int(exc.exit_code)
    if as_json:
        sys.stdout.write(json.dumps(asdict(result), indent=2) + "\n")
    else:
        print_result: Callable[[Any], None] = importlib.import_module(report).print_result
        print_result(result)
    return int(ExitCode.OK if result.gate_passed else ExitCode.GATE_FAILED)
