"""`sluice propose` gives an InferenceService KServe's inference logger when its policy judges
answers, so the cluster's requests and answers reach `sluice serve`'s `/v1/events`."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML
from support.gitops_repo import manifest_files

from controller.errors import ConfigError
from controller.gates.kpi_policy import KPI_EXAMPLES
from controller.manifests.environment import parse_environment
from controller.manifests.inference_logger import events_url_problem, set_inference_logger
from controller.manifests.manifest import dump_pin, load_pin
from controller.null_ports import NoForge
from controller.proposals.propose import ProposalRequest, ProposalResult, propose
from controller.rollout.policy import RolloutPolicy, ShadowPhase, needs_prediction_log
from controller.testing import MemoryRegistry, MemoryReleaseRepository

MODEL = "fraud-detector"
CONFIG = "manifests/overlays/staging/sluice.yaml"
PIN = "manifests/overlays/staging/fraud-detector.yaml"
URL = "http://sluice.sluice.svc:8686/v1/events"
SHADOW = "rollout:\n  shadow:\n    mirrorPercent: 50\n"


def proposed(*, events_url: str | None, shadow: bool) -> tuple[ProposalResult, str, str]:
    """Propose v1 of the model in staging, configured so; the result, the pin before and on
    the proposal's branch."""
    files = manifest_files(MODEL)
    config = files[CONFIG]
    if shadow:
        config = config.replace("rollout:\n", SHADOW, 1)
    if events_url is not None:
        config = config.replace("releases:\n", f"eventsUrl: {events_url}\nreleases:\n", 1)
    files[CONFIG] = config
    workspace = MemoryReleaseRepository(files)
    registry = MemoryRegistry()
    registry.register(MODEL)
    request = ProposalRequest(model=MODEL, environment="staging")
    result = propose(request, registry=registry, workspace=workspace, forge=NoForge())
    after = workspace.read(result.branch, PIN)
    assert after is not None
    return result, files[PIN], after


def test_a_shadow_policy_with_an_events_url_gets_the_logger_written_and_validated() -> None:
    """The predictor's logger posts every request and answer to eventsUrl and copies the
    revision header; the pin's comments and other lines stay, and the overlay validated
    against KServe's CRD before the commit (propose refuses otherwise)."""
    result, before, after = proposed(events_url=URL, shadow=True)
    assert (result.status, result.notes) == ("proposed", ())
    logger = YAML(typ="safe").load(after)["spec"]["predictor"]["logger"]
    assert logger == {
        "mode": "all", "url": URL,
        "metadataHeaders": ["Knative-Serving-Revision", "X-Sluice-Synthetic"],
    }  # fmt: skip
    assert [line for line in before.splitlines() if line not in after.splitlines()] == []
    assert after.splitlines()[0].startswith("# Model pin for staging")


def test_without_an_events_url_nothing_is_written_and_the_result_says_why_once() -> None:
    result, _, after = proposed(events_url=None, shadow=True)
    assert "logger" not in YAML(typ="safe").load(after)["spec"]["predictor"]
    assert result.notes == (
        f"{MODEL}'s policy in staging judges its answers (a shadow phase or KPIs), but staging's "
        "sluice.yaml sets no eventsUrl: the InferenceService gets no inference logger, so the "
        "cluster's answers do not reach sluice serve's prediction log; set eventsUrl to sluice "
        "serve's /v1/events",
    )


def test_a_policy_that_judges_no_answers_gets_no_logger_and_no_note() -> None:
    result, _, after = proposed(events_url=URL, shadow=False)
    assert "logger" not in YAML(typ="safe").load(after)["spec"]["predictor"]
    assert result.notes == ()


def test_a_shadow_phase_or_kpis_need_the_prediction_log() -> None:
    assert not needs_prediction_log(RolloutPolicy())
    assert needs_prediction_log(RolloutPolicy(shadow=ShadowPhase()))
    kpis = {"gates": {"kpis": [KPI_EXAMPLES[0]]}}
    assert needs_prediction_log(RolloutPolicy.model_validate(kpis))


PINNED = """\
# a pin with a logger of its own
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: fraud-detector
spec:
  predictor:
    logger:
      mode: request  # was only requests
      metadataHeaders: [X-Tenant]
      storage:
        path: /logs
    model:
      modelFormat:
        name: mlflow
"""


def test_an_existing_logger_keeps_its_other_keys_and_a_second_write_changes_nothing() -> None:
    document = load_pin(PINNED, source="pin.yaml")
    set_inference_logger(document, URL, source="pin.yaml")
    once = dump_pin(document)
    set_inference_logger(document, URL, source="pin.yaml")
    assert dump_pin(document) == once
    logger = YAML(typ="safe").load(once)["spec"]["predictor"]["logger"]
    assert logger == {
        "mode": "all",
        "metadataHeaders": ["X-Tenant", "Knative-Serving-Revision", "X-Sluice-Synthetic"],
        "storage": {"path": "/logs"}, "url": URL,
    }  # fmt: skip
    assert once.startswith("# a pin with a logger of its own\n")
    assert "# was only requests" in once


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sluice:8686/v1/events", "is not an http(s) URL"),
        ("http://sluice:s3cret@sluice.svc/v1/events", "carries a credential or a query"),
        ("http://sluice.svc/v1/events?token=s3cret", "carries a credential or a query"),
        ("http://sluice.svc:8686/", "does not end in /v1/events"),
    ],
)
def test_an_events_url_is_bare_and_names_the_route(url: str, problem: str) -> None:
    assert problem in (events_url_problem(url) or "")
    text = manifest_files(MODEL)[CONFIG].replace("releases:\n", f"eventsUrl: {url}\nreleases:\n")
    with pytest.raises(ConfigError) as error:
        parse_environment(text, source=CONFIG, environment="staging")
    assert "eventsUrl" in str(error.value)
    assert "s3cret" not in str(error.value)
    assert "\n" not in str(error.value)
