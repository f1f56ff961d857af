"""One tree is rendered once: a render is remembered by the files kustomize can read.

Real ``kubectl kustomize`` on copies of this repository's manifests; the renders are counted
at :func:`subprocess.run` in :mod:`controller.manifests.render`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.errors import ManifestInvalid
from controller.manifests import render
from controller.manifests.render import render_overlay, validate_rendered
from controller.manifests.render_cache import forget_all, tree_key

ROOT = Path(__file__).resolve().parent.parent
OVERLAY = "manifests/overlays/local"
PIN = f"{OVERLAY}/fraud-detector.yaml"


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The directories ``kubectl kustomize`` runs on from now on, none remembered before."""
    forget_all()
    ran: list[str] = []
    run = subprocess.run

    def counting(args: list[str], **kwargs: Any) -> Any:
        ran.append(args[-1])
        return run(args, **kwargs)

    monkeypatch.setattr(render.subprocess, "run", counting)
    return ran


def checkout(path: Path) -> Path:
    """A copy of the repository's manifests, as a work tree holds them."""
    shutil.copytree(ROOT / "manifests", path / "manifests")
    (path / ".git").mkdir()
    (path / ".git" / "index").write_bytes(b"changes with every commit, never rendered")
    return path


def test_the_same_files_render_once_wherever_they_are(tmp_path: Path, renders: list[str]) -> None:
    """A second tree with the same files (the commit a sync renders after the edit that made
    it was validated) is answered from memory, as a copy the caller may change."""
    first, second = checkout(tmp_path / "edit"), checkout(tmp_path / "sync")
    documents = validate_rendered(first / OVERLAY, tree=first)
    documents[0]["metadata"]["name"] = "changed by the caller"
    (second / ".git" / "index").write_bytes(b"another index")
    again = render_overlay(second / OVERLAY, tree=second)
    assert renders == [str(first / OVERLAY)]
    assert again[0]["metadata"]["name"] == "fraud-detector"
    assert again == validate_rendered(ROOT / OVERLAY)


def test_a_changed_byte_anywhere_it_reads_renders_again(tmp_path: Path, renders: list[str]) -> None:
    """A change to the pin or to the base the overlay names is a new tree: rendered, and
    validated (an invalid one is refused as before)."""
    tree = checkout(tmp_path / "tree")
    render_overlay(tree / OVERLAY, tree=tree)
    base = tree / "manifests/base/fraud-detector.yaml"
    base.write_text(base.read_text().replace("part-of: sluice", "part-of: sluice-2"))
    (relabelled,) = render_overlay(tree / OVERLAY, tree=tree)
    assert relabelled["metadata"]["labels"]["app.kubernetes.io/part-of"] == "sluice-2"
    pin = tree / PIN
    pin.write_text("apiVersion: v1\nkind: Nothing\nmetadata:\n  name: patches-nothing\n")
    with pytest.raises(ManifestInvalid):
        validate_rendered(tree / OVERLAY, tree=tree)
    with pytest.raises(ManifestInvalid):
        validate_rendered(tree / OVERLAY, tree=tree)  # a failed render is never remembered
    assert len(renders) == 4


def test_files_elsewhere_in_the_tree_do_not_matter(tmp_path: Path, renders: list[str]) -> None:
    """Only what the overlay can read is in its key: another environment's pin is not."""
    tree = checkout(tmp_path / "tree")
    render_overlay(tree / OVERLAY, tree=tree)
    (tree / "manifests/overlays/staging/fraud-detector.yaml").write_text("changed: true\n")
    (tree / "README.md").write_text("# notes\n")
    render_overlay(tree / OVERLAY, tree=tree)
    assert len(renders) == 1


@pytest.mark.parametrize(
    "resource",
    [
        "github.com/example/manifests//base?ref=v1",  # a remote base
        "https://example.com/base.yaml",
        "../../../../outside",  # out of the tree
    ],
)
def test_an_overlay_that_can_read_elsewhere_is_never_remembered(
    tmp_path: Path, resource: str
) -> None:
    """A remote base or a path out of the tree can change without the tree changing."""
    tree = checkout(tmp_path / "tree")
    (tmp_path / "outside").mkdir()
    kustomization = tree / OVERLAY / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text().replace("  - ../../base\n", f"  - ../../base\n  - {resource}\n")
    )
    assert tree_key(tree, tree / OVERLAY, "kubectl") is None
    assert tree_key(tree, tmp_path / "outside", "kubectl") is None


def test_a_flow_list_is_never_followed(tmp_path: Path) -> None:
    """``resources: [../../base, github.com/...]`` is not read entry by entry: not kept."""
    tree = checkout(tmp_path / "tree")
    kustomization = tree / OVERLAY / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text().replace(
            "resources:\n  - ../../base\n", "resources: [../../base, github.com/o/r//b]\n"
        )
    )
    assert "resources: [" in kustomization.read_text()
    assert tree_key(tree, tree / OVERLAY, "kubectl") is None


def test_a_symbolic_link_out_of_the_tree_is_never_remembered(tmp_path: Path) -> None:
    tree = checkout(tmp_path / "tree")
    (tmp_path / "elsewhere.yaml").write_text("a: 1\n")
    assert tree_key(tree, tree / OVERLAY, "kubectl") is not None
    (tree / OVERLAY / "extra.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    assert tree_key(tree, tree / OVERLAY, "kubectl") is None
