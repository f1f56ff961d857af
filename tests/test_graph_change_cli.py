"""`sluice graph propose|step|promote|rollback` against a real bare Git remote, as the README
shows them: the market-regime overlay as the `local` environment, a changed graph proposed as a
canary on a branch, merged, stepped, promoted or rolled back by commits on main.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from support.gitops_repo import ROOT, commit_to_remote, snapshot
from support.gitrepo import GitRemote, git

from controller.demo.gitops_remote import merge_branch
from controller.manifests.graph_canary import spec_digest

OVERLAY = "manifests/overlays/local"
GRAPH_FILE = f"{OVERLAY}/inference-graph.yaml"
EXAMPLE = ROOT / "models/market_regime/overlay"
GRAPH = "market-regime"
BY_REGIME = """        - name: calm
          serviceName: market-regime-calm
          condition: instances.#(regime=="calm")
        - name: volatile
          serviceName: market-regime-volatile
          condition: instances.#(regime=="volatile")
        - name: black-swan
          nodeName: blend
          condition: instances.#(regime=="black_swan")
"""
BLACK_SWAN_FIRST = """        - name: black-swan
          nodeName: blend
          condition: instances.#(p_black_swan>0.2)
        - name: calm
          serviceName: market-regime-calm
          condition: instances.#(regime=="calm")
        - name: volatile
          serviceName: market-regime-volatile
          condition: instances.#(regime=="volatile")
"""


@pytest.fixture
def remote(git_remote: GitRemote, tmp_path: Path) -> GitRemote:
    """The remote with the market-regime overlay as the `local` environment, as the demo has it."""

    def seed(tree: Path) -> None:
        shutil.copytree(ROOT / "manifests", tree / "manifests")
        shutil.rmtree(tree / OVERLAY)
        shutil.copytree(EXAMPLE, tree / OVERLAY)

    commit_to_remote(git_remote, tmp_path / "seed", "Serve the market-regime graph", seed)
    return git_remote


def sluice(tmp_path: Path, remote: GitRemote, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "SLUICE_GIT_REMOTE": remote.url,
        "SLUICE_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(Path(sys.executable).with_name("sluice")), *args],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip


def load(text: str) -> Any:
    return json.loads(json.dumps(YAML(typ="safe").load(text)))


def show(remote: GitRemote, ref: str, path: str = GRAPH_FILE) -> str:
    return git("show", f"{ref}:{path}", cwd=remote.path)


def subject(remote: GitRemote, ref: str = "main") -> str:
    return git("log", "-1", "--format=%s", ref, cwd=remote.path)


def proposed_spec(tmp_path: Path) -> Path:
    """The example graph sending a row to the blend whenever the classifier gives a black swan
    more than 20%, and with a fourth member in the blend's Ensemble."""
    text = (EXAMPLE / "inference-graph.yaml").read_text()
    assert BY_REGIME in text
    text = text.replace(BY_REGIME, BLACK_SWAN_FIRST)
    assert text.endswith("          serviceName: market-regime-volatile\n")  # the Ensemble's last
    text += "        - name: classifier-again\n          serviceName: market-regime-classifier\n"
    path = tmp_path / "market-regime.yaml"
    path.write_text(text)
    return path


def propose(tmp_path: Path, remote: GitRemote, *extra: str) -> subprocess.CompletedProcess[str]:
    spec = proposed_spec(tmp_path)
    return sluice(
        tmp_path, remote, "graph", "propose", GRAPH, "--env", "local", "--spec", str(spec), *extra
    )


def test_a_proposal_is_a_branch_with_the_canary_form_and_prints_the_graph_diff(
    remote: GitRemote, tmp_path: Path
) -> None:
    before = show(remote, "main")
    done = propose(tmp_path, remote, "--weight", "10")
    assert done.returncode == 0, done.stderr
    digest = spec_digest(load(proposed_spec(tmp_path).read_text()))
    branch = f"sluice/local/graph-{GRAPH}/{digest}"
    out = done.stdout
    assert f"Proposed: graph {GRAPH} → local (canary 10%)" in out
    assert f"branch {branch} → main" in out
    assert "+        - name: black-swan\n+          nodeName: blend\n" in out
    assert "+          condition: instances.#(p_black_swan>0.2)\n" in out
    assert "+        - name: classifier-again\n" in out
    assert "stable" not in out.split("Validation:")[0]  # the diff is of the specs, not the form
    assert "- [pass] canary form (both graphs under the root Splitter): the same checks" in out
    assert f"git merge --no-ff origin/{branch}" in out

    assert show(remote, "main") == before  # main is untouched until the merge
    assert subject(remote, branch) == f"graph {GRAPH} → local (canary 10%)"
    trailers = git("log", "-1", "--format=%(trailers:only,unfold)", branch, cwd=remote.path)
    assert f"Sluice-Graph-Canary: {digest}" in trailers
    form = load(show(remote, branch))
    assert form["metadata"]["annotations"] == {
        "sluice.dev/outcome-segment": "regime",  # the graph's own, kept
        "sluice.dev/graph-canary": digest,
        "sluice.dev/graph-canary-weight": "10",
    }
    assert form["spec"]["nodes"]["root"]["steps"] == [
        {"name": "stable", "nodeName": "stable", "weight": 90},
        {"name": "canary", "nodeName": "canary", "weight": 10},
    ]
    assert form["spec"]["nodes"]["stable"] == load(before)["spec"]["nodes"]["root"]
    assert len(form["spec"]["nodes"]["canary-blend-inputs"]["steps"]) == 4
    # The other files of the overlay are as they were.
    changed = git("diff", "--name-only", "main", branch, cwd=remote.path)
    assert changed == GRAPH_FILE

    refs = snapshot(remote)
    again = propose(tmp_path, remote, "--weight", "10")
    assert again.returncode == 0, again.stderr
    assert "Already proposed (no new commit)" in again.stdout
    assert snapshot(remote) == refs


def test_merged_then_stepped_and_promoted_by_commits_on_main(
    remote: GitRemote, tmp_path: Path
) -> None:
    done = propose(tmp_path, remote, "--json")  # the environment's first step: 50% locally
    assert done.returncode == 0, done.stderr
    proposal = json.loads(done.stdout)
    assert proposal["weight"] == 50
    assert proposal["subject"] == f"graph {GRAPH} → local (canary 50%)"
    merge_branch(remote.path, proposal["branch"])

    stepped = sluice(tmp_path, remote, "graph", "step", GRAPH, "--env", "local", "--weight", "80")
    assert stepped.returncode == 0, stepped.stderr
    assert f"Committed: graph {GRAPH}: canary 80% (local)" in stepped.stdout
    assert subject(remote) == f"graph {GRAPH}: canary 80% (local)"
    weights = [s["weight"] for s in load(show(remote, "main"))["spec"]["nodes"]["root"]["steps"]]
    assert weights == [20, 80]

    refs = snapshot(remote)
    again = sluice(tmp_path, remote, "graph", "step", GRAPH, "--env", "local", "--weight", "80")
    assert again.returncode == 0, again.stderr
    assert "Done already (nothing committed)" in again.stdout
    assert snapshot(remote) == refs

    promoted = sluice(tmp_path, remote, "graph", "promote", GRAPH, "--env", "local")
    assert promoted.returncode == 0, promoted.stderr
    assert subject(remote) == f"graph {GRAPH}: promoted (local)"
    assert load(show(remote, "main")) == load(proposed_spec(tmp_path).read_text())

    refs = snapshot(remote)
    twice = sluice(tmp_path, remote, "graph", "promote", GRAPH, "--env", "local")
    assert twice.returncode == 0, twice.stderr
    assert "serves no canary (last change: " in twice.stdout
    assert f"graph {GRAPH}: promoted (local)): nothing to promote" in twice.stdout
    assert snapshot(remote) == refs


def test_a_rollback_restores_the_old_graph_as_it_was(remote: GitRemote, tmp_path: Path) -> None:
    before = show(remote, "main")
    done = propose(tmp_path, remote, "--weight", "10", "--json")
    assert done.returncode == 0, done.stderr
    merge_branch(remote.path, json.loads(done.stdout)["branch"])

    back = sluice(
        tmp_path, remote, "graph", "rollback", GRAPH, "--env", "local",
        "--reason", "calm branch answers 5xx",
    )  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert subject(remote) == f"rollback graph {GRAPH}: calm branch answers 5xx"
    assert show(remote, "main") == before  # comments, order and quoting too

    again = propose(tmp_path, remote, "--weight", "10", "--json")  # fixed, proposed again
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "proposed"  # a branch to merge again
    merge_branch(remote.path, json.loads(again.stdout)["branch"])
    assert load(show(remote, "main"))["metadata"]["annotations"]["sluice.dev/graph-canary"]


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_refusals_name_the_thing_and_the_fix_and_leave_git_untouched(
    remote: GitRemote, tmp_path: Path
) -> None:
    spec = proposed_spec(tmp_path)
    refs = snapshot(remote)

    def graph_propose(graph: str, path: Path) -> str:
        return refusal(
            sluice(
                tmp_path, remote, "graph", "propose", graph, "--env", "local", "--spec", str(path)
            )
        )

    assert "unknown InferenceGraph 'by-route' in local" in graph_propose("by-route", spec)
    assert "(graphs there: market-regime)" in graph_propose("by-route", spec)

    misspelt = tmp_path / "misspelt.yaml"
    misspelt.write_text(spec.read_text().replace("- name: classify", "- stepName: classify"))
    line = graph_propose(GRAPH, misspelt)
    assert "stepName" in line
    assert "remove it or use one of:" in line

    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(spec.read_text().replace(f"name: {GRAPH}\n", "name: regimes\n", 1))
    assert "is InferenceGraph 'regimes', not 'market-regime'" in graph_propose(GRAPH, renamed)

    unchanged = tmp_path / "unchanged.yaml"
    unchanged.write_text((EXAMPLE / "inference-graph.yaml").read_text())
    assert "nothing to propose; change the graph's spec.nodes" in graph_propose(GRAPH, unchanged)

    step = sluice(tmp_path, remote, "graph", "step", GRAPH, "--env", "local", "--weight", "50")
    assert "has no canary to step; propose a change first" in refusal(step)
    assert snapshot(remote) == refs

    done = propose(tmp_path, remote)
    assert done.returncode == 0, done.stderr
    merge_branch(remote.path, f"sluice/local/graph-{GRAPH}/{spec_digest(load(spec.read_text()))}")
    refs = snapshot(remote)
    other = tmp_path / "other.yaml"
    other.write_text(spec.read_text().replace("p_black_swan>0.2", "p_black_swan>0.3"))
    assert "is already in canary form" in graph_propose(GRAPH, other)
    too_much = sluice(tmp_path, remote, "graph", "step", GRAPH, "--env", "local", "--weight", "100")
    assert "must be 1 to 99, not 100; promote it for 100" in refusal(too_much)
    assert snapshot(remote) == refs


def test_graph_rollout_refuses_bad_input_in_one_line_and_commits_nothing(
    remote: GitRemote, tmp_path: Path
) -> None:
    """`sluice graph rollout`: an unknown graph, a bad name or a bad graphRollout policy is
    exit 2 and one line, a graph without a canary says so and exits 0; Git is untouched."""
    refs = snapshot(remote)

    def rollout(graph: str) -> subprocess.CompletedProcess[str]:
        return sluice(tmp_path, remote, "graph", "rollout", graph, "--env", "local", "--once")

    assert "unknown InferenceGraph 'by-route' in local" in refusal(rollout("by-route"))
    assert "Bad_Graph" in refusal(rollout("Bad_Graph"))
    idle = rollout(GRAPH)
    assert idle.returncode == 0, idle.stderr
    assert f"graph {GRAPH} serves no canary in local" in idle.stdout
    assert f"sluice graph propose {GRAPH} --env local --spec FILE" in idle.stdout
    assert snapshot(remote) == refs

    done = propose(tmp_path, remote, "--json")
    assert done.returncode == 0, done.stderr
    merge_branch(remote.path, json.loads(done.stdout)["branch"])
    refs = snapshot(remote)
    unserved = rollout(GRAPH)  # no local target runs: nothing can be judged, nothing committed
    assert unserved.returncode == 3, (unserved.stdout, unserved.stderr)
    assert unserved.stderr.strip().splitlines() == [
        "sluice: error: the local target is not running; start it with `sluice local up`"
    ]
    assert snapshot(remote) == refs

    def bad_policy(tree: Path) -> None:
        path = tree / OVERLAY / "sluice.yaml"
        path.write_text(path.read_text().replace("steps: [50]\n  interval: 5", "steps: [50, 100]"))

    commit_to_remote(remote, tmp_path / "bad-policy", "A graph policy promoting at 100", bad_policy)
    refs = snapshot(remote)
    line = refusal(rollout(GRAPH))
    assert "graphRollout.steps" in line
    assert "strictly ascending weights in 1..99" in line
    assert snapshot(remote) == refs


class NothingServed:
    """A target that serves no InferenceGraph (its runtime never synced the merge)."""

    def inference_graphs(self, environment: str) -> list[Any]:
        return []


def test_graph_rollout_with_another_walkers_lease_says_who_and_commits_nothing(
    remote: GitRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sluice graph rollout --once` in process, on the real remote and its Git lease store:
    a canary long past its progress deadline is due for a rollback, but while another walker
    holds the graph's lease the pass only says who, until when, and commits nothing; once that
    lease is released, the pass commits the rollback and releases the lease it took."""
    from rich.console import Console

    from controller.backends.git_lease import GitLeaseStore
    from controller.backends.git_repo import GitWorkspace
    from controller.commands import graph as graph_command
    from controller.lease import Lease, graph_lease_name
    from controller.manifests.graph_canary import canary_form
    from controller.manifests.graph_file import dump_graph, load_graph
    from controller.settings import Settings

    old = load_graph((EXAMPLE / "inference-graph.yaml").read_text(), source="example")
    new = load_graph((EXAMPLE / "inference-graph.yaml").read_text(), source="example")
    new["spec"]["nodes"]["blend-inputs"]["steps"].pop()

    def merged(tree: Path) -> None:
        (tree / GRAPH_FILE).write_text(dump_graph(canary_form(old, new, 10)))

    commit_to_remote(remote, tmp_path / "merge", "Merge the graph change", merged)  # in 2024
    monkeypatch.setattr(graph_command, "build_target", lambda settings, kind: NothingServed())
    monkeypatch.setattr(graph_command, "build_metrics", lambda settings, kind: None)
    settings = Settings(git_remote=remote.url, state_dir=tmp_path / "state")
    other = GitLeaseStore(GitWorkspace(remote.url, tmp_path / "other"))
    name = graph_lease_name("local", GRAPH)
    now = float(int(time.time()))  # whole seconds: the expiry prints as the test computes it
    assert other.swap(name, None, Lease("ci-7:4242:9f3a1c", now, now, 30.0))
    refs = git("for-each-ref", "refs/heads", cwd=remote.path)

    def rollout(*flags: str) -> tuple[int, str]:
        out = io.StringIO()
        code = graph_command.run_graph_rollout(
            settings, graph=GRAPH, environment="local", once=True, target="local",
            remote=None, as_json="--json" in flags, console=Console(file=out, width=300),
        )  # fmt: skip
        return code, out.getvalue()

    code, printed = rollout()
    assert code == 0
    until = time.strftime("%H:%M:%S", time.localtime(now + 30))
    assert f"graph {GRAPH} canary 10% [rolling_back] ci-7:4242:9f3a1c holds this graph's " in (
        printed
    )
    assert f"lease (until {until} unless renewed): it analyses and commits" in printed
    assert git("for-each-ref", "refs/heads", cwd=remote.path) == refs  # nothing committed
    held = other.read(name)
    assert held is not None
    assert held[0].holder == "ci-7:4242:9f3a1c"  # and the holder's lease untouched

    assert other.swap(name, held[1], None)  # the other walker stopped
    code, printed = rollout("--json")
    assert code == 1
    (walked,) = json.loads(printed)["passes"]
    assert (walked["action"], walked["holder"]) == ("rollback", None)
    assert subject(remote).startswith(f"rollback graph {GRAPH}: the canary at 10% was not served")
    assert other.read(name) is None  # released when --once returned
