"""An overlay's ``kustomization.yaml`` edited the way a person would: found under any of the
names kustomize accepts, parsed keeping its own indentation, comments and order, and written
back so that only the changed lines differ (ruamel.yaml's round trip, with the comments it
hangs on a list's last item moved along when an item is appended or removed)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.tokens import CommentToken
from ruamel.yaml.util import load_yaml_guess_indent

from controller.errors import ManifestInvalid

__all__ = [
    "KUSTOMIZATION_FILES",
    "Kustomization",
    "dump_yaml",
    "load_kustomization",
    "move_trailing_lines",
    "parse_kustomization",
    "round_trip_yaml",
]

#: The names kustomize looks for in an overlay, in its order.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def round_trip_yaml(*, mapping: int = 2, sequence: int = 4, offset: int = 2) -> YAML:
    """A round-trip YAML that keeps quotes and long lines, with the given indentation."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def dump_yaml(yaml: YAML, document: Any) -> str:
    """``document`` as ``yaml`` writes it."""
    stream = io.StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()


@dataclass
class Kustomization:
    """A kustomization file, parsed for editing, and the YAML that writes it back alike."""

    path: Path
    document: CommentedMap
    yaml: YAML

    def save(self) -> None:
        """Write the edited document back to its file."""
        self.path.write_text(dump_yaml(self.yaml, self.document), encoding="utf-8")


def parse_kustomization(text: str, source: str) -> tuple[CommentedMap, YAML]:
    """The kustomization ``text`` and a YAML that writes it back in its own indentation;
    :class:`ManifestInvalid` naming ``source`` when it is not one."""
    try:
        # Keep the file's own indentation, so that only the changed line differs.
        _, indent, block_seq_indent = load_yaml_guess_indent(text)
        yaml = round_trip_yaml(mapping=indent, sequence=indent, offset=block_seq_indent or 0)
        yaml.explicit_start = text.lstrip().startswith("---")
        document = yaml.load(text)
    except YAMLError:
        raise ManifestInvalid(f"{source}: malformed YAML; fix the syntax") from None
    if not isinstance(document, CommentedMap):
        raise ManifestInvalid(f"{source}: not a Kustomization; fix the file")
    resources = document.get("resources")
    if resources is not None and not isinstance(resources, CommentedSeq):
        raise ManifestInvalid(f"{source}: resources must be a list; fix the file")
    return document, yaml


def load_kustomization(overlay: Path) -> Kustomization:
    """The kustomization file of ``overlay``, under the first name kustomize would read."""
    path = next(
        (overlay / name for name in KUSTOMIZATION_FILES if (overlay / name).is_file()), None
    )
    if path is None:
        raise ManifestInvalid(f"{overlay}: no kustomization.yaml; pass an overlay directory")
    document, yaml = parse_kustomization(path.read_text(encoding="utf-8"), str(path))
    return Kustomization(path, document, yaml)


def move_trailing_lines(seq: CommentedSeq, source: int, target: int) -> None:
    """Move the comment lines ruamel.yaml hangs after item ``source`` to item ``target``.

    ruamel.yaml attaches the comments that follow a list to its last item, so an item appended
    after it would print below them, and removing that item again must hand them back.
    """
    comments = seq.ca.items.get(source)
    token = comments[0] if comments else None
    if not isinstance(token, CommentToken) or "\n" not in token.value:
        return
    head, tail = token.value.split("\n", 1)
    if not tail:
        return
    if head:
        token.value = head + "\n"
    else:
        del seq.ca.items[source]
    existing = seq.ca.items.setdefault(target, [None, None, None, None])
    if isinstance(existing[0], CommentToken):
        existing[0].value = existing[0].value.rstrip("\n") + "\n" + tail
    else:
        existing[0] = CommentToken("\n" + tail, CommentMark(0))
