"""YAML configuration files read into pydantic models, with one-line errors.

Sluice reads several small YAML files a person writes (settings, environments, quality gates,
drift thresholds). Each failure must name the file, the line or the field, and the fix, and
never show a parser traceback; this module is the one place that turns ruamel's and
pydantic's exceptions into such a :class:`~controller.errors.ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from controller.errors import ConfigError

__all__ = ["first_error", "load_yaml_file", "parse_yaml", "validate_yaml_model"]

Model = TypeVar("Model", bound=BaseModel)


def parse_yaml(text: str, *, label: str) -> Any:
    """Parse YAML; malformed text is a :class:`ConfigError` naming ``label`` and the line."""
    try:
        return YAML(typ="safe").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{label}: malformed YAML{where}; fix the syntax") from None


def load_yaml_file(path: Path, *, label: str, fix: str) -> Any:
    """Read and parse a YAML file; an unreadable file says ``fix``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{label}: cannot be read ({exc.strerror}); {fix}") from None
    return parse_yaml(text, label=label)


def first_error(exc: ValidationError) -> tuple[str, str]:
    """The dotted field path and message of a validation error's first problem."""
    first = exc.errors()[0]
    return ".".join(str(part) for part in first["loc"]) or "(top level)", str(first["msg"])


def validate_yaml_model(model: type[Model], data: Any, *, label: str) -> Model:
    """Validate parsed YAML (an empty file counts as ``{}``) against ``model``."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        field, message = first_error(exc)
        raise ConfigError(f"{label}: {field}: {message}") from None
