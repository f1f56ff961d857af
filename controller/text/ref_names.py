"""Git's rules for branch names, in pure Python, and the names Sluice puts into branches.

MLflow accepts model names Git refuses as part of a ref (``fd x``, ``fd..evil``, ``fd.lock``,
``fd@{1}``), and Sluice's proposal branches are ``sluice/<environment>/<model>/v<N>``. A name
is checked here, before anything touches Git, so that it fails with one line (exit 2) instead
of a ``GitCommandError`` halfway through a proposal. :func:`is_valid_branch_name` follows
``git check-ref-format --branch`` (``refs.c: check_refname_format`` on ``refs/heads/<name>``);
``tests/test_adversarial.py`` compares the two on a list of names.
"""

from __future__ import annotations

from controller.errors import InputError

__all__ = [
    "branch_name_problem",
    "is_valid_branch_name",
    "validate_environment_name",
    "validate_graph_name",
    "validate_model_name",
]

#: Characters no ref may contain, besides ASCII control characters and DEL.
_FORBIDDEN = frozenset(" ~^:?*[\\")


def _component_problem(component: str) -> str | None:
    if not component:
        return "has an empty path component ('//', or a leading or trailing '/')"
    if component.startswith("."):
        return "has a component starting with '.'"
    if component.endswith(".lock"):
        return "has a component ending in '.lock'"
    return None


def branch_name_problem(name: str) -> str | None:
    """Why ``git check-ref-format --branch NAME`` refuses ``name``, or None if it accepts it."""
    if not name:
        return "is empty"
    if name.startswith("-"):
        return "starts with '-'"
    if name == "HEAD":
        return "is HEAD"
    for char in name:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return "contains a control character"
        if char in _FORBIDDEN:
            shown = "a space" if char == " " else repr(char)
            return f"contains {shown} (refused: space ~ ^ : ? * [ \\ and control characters)"
    if ".." in name:
        return "contains '..'"
    if "@{" in name:
        return "contains '@{'"
    if name.endswith("."):
        return "ends with '.'"
    for component in name.split("/"):
        problem = _component_problem(component)
        if problem:
            return problem
    return None


def is_valid_branch_name(name: str) -> bool:
    """What ``git check-ref-format --branch NAME`` says, without running Git."""
    return branch_name_problem(name) is None


def _validate(name: str, what: str, fix: str) -> str:
    problem = "contains '/'" if "/" in name else branch_name_problem(name)
    if problem is None:
        # The name as it appears inside a proposal branch must be valid there too.
        problem = branch_name_problem(f"sluice/{name}/x/v1")
    if problem is not None:
        raise InputError(
            f"{what} {name!r} cannot be part of a Git branch name: it {problem}; {fix}"
        )
    return name


def validate_model_name(name: str) -> str:
    """``name`` if it can be the ``<model>`` of ``sluice/<env>/<model>/v<N>``; an
    :class:`InputError` (exit 2) saying which rule it breaks otherwise."""
    return _validate(
        name, "model name", "register the model under a name Git accepts (letters, digits, -_.)"
    )


def validate_environment_name(name: str) -> str:
    """``name`` if it can be an environment (``manifests/overlays/<env>``, and the ``<env>`` of
    a proposal branch); an :class:`InputError` otherwise."""
    return _validate(name, "environment", "name an overlay under manifests/overlays/")


def validate_graph_name(name: str) -> str:
    """``name`` if an InferenceGraph so named can be the ``graph-<name>`` of a graph proposal's
    branch (``sluice/<env>/graph-<name>/<digest>``); an :class:`InputError` otherwise."""
    return _validate(name, "InferenceGraph name", "name the graph as its metadata.name does")
