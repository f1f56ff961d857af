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

from controller.errors import ConfigError, SluiceError
from controller.limits import SETTINGS_FILE_MAX_BYTES, check_size

__all__ = [
    "check_yaml_text",
    "first_error",
    "load_yaml_file",
    "parse_yaml",
    "validate_yaml_model",
]

Model = TypeVar("Model", bound=BaseModel)


def _malformed(exc: YAMLError, label: str, error: type[SluiceError]) -> SluiceError:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    return error(f"{label}: malformed YAML{where}; fix the syntax")


def check_yaml_text(
    text: str,
    *,
    label: str,
    limit: int,
    kind: str,
    error: type[SluiceError] = ConfigError,
) -> None:
    """Refuse YAML over ``limit`` bytes, or with an anchor (``&a``) or alias (``*a``).

    Aliases are how a few hundred bytes become gigabytes in whatever expands them next
    ("billion laughs": kustomize expands them while rendering), and no file Sluice reads needs
    them. The check walks the parser's events, so it never builds (let alone expands) a tree.
    """
    check_size(len(text.encode("utf-8")), limit, label=label, kind=kind, error=error)
    if "&" not in text and "*" not in text:
        return
    try:
        for event in YAML(typ="safe").parse(text):
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                mark = getattr(event, "start_mark", None)
                where = f" at line {mark.line + 1}" if mark is not None else ""
                what = "alias" if type(event).__name__ == "AliasEvent" else "anchor"
                raise error(
                    f"{label}: YAML {what} {anchor!r}{where} is refused (anchors and aliases "
                    "can expand without bound); write the values out"
                )
    except YAMLError as exc:
        raise _malformed(exc, label, error) from None


def parse_yaml(
    text: str,
    *,
    label: str,
    limit: int = SETTINGS_FILE_MAX_BYTES,
    kind: str = "settings file",
) -> Any:
    """Parse YAML; malformed text, anchors or aliases and a file over ``limit`` bytes are a
    :class:`ConfigError` naming ``label`` (and the line)."""
    check_yaml_text(text, label=label, limit=limit, kind=kind)
    try:
        return YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise _malformed(exc, label, ConfigError) from None


def load_yaml_file(
    path: Path,
    *,
    label: str,
    fix: str,
    limit: int = SETTINGS_FILE_MAX_BYTES,
    kind: str = "settings file",
) -> Any:
    """Read and parse a YAML file (see :func:`parse_yaml`); an unreadable file says ``fix``."""
    try:
        size = path.stat().st_size
        check_size(size, limit, label=label, kind=kind, error=ConfigError)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{label}: cannot be read ({exc.strerror}); {fix}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: is not UTF-8 text; {fix}") from None
    return parse_yaml(text, label=label, limit=limit, kind=kind)


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
