"""Onboard a model Sluice did not train: the files an environment needs to serve it.

``sluice init MODEL --env ENV`` reads the registered version's ``MLmodel`` and input example
(through the registry) and writes, in a work tree of the GitOps repository, what the fraud
detector has by hand: the base InferenceService (its ``modelFormat`` from the MLmodel's
flavours, refused when no ServingRuntime in ``manifests/serving-runtime/`` serves one of them),
its entry in the base kustomization, the overlay's pin file and patch, the release in the
environment's ``sluice.yaml`` (comments and order kept, a comment spelling out the rollout
policy it follows), and a V1 request body (``manifests/base/MODEL.request.json``) built from the
rows the smoke and the load test will send. Every edit is idempotent: a file that already says
what it should is left alone, and one that says something else is an error, not overwritten.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from controller.errors import ConfigError, InputError, ManifestInvalid
from controller.manifests.environment import ENVIRONMENT_FILE, parse_environment

__all__ = [
    "FLAVOUR_FORMATS",
    "Onboarding",
    "ServingRuntime",
    "choose_format",
    "inference_service_name",
    "request_body",
    "runtimes_in",
    "scaffold_release",
    "serving_runtimes",
]

#: MLflow flavour -> KServe model format. ``python_function`` is what Sluice's own runtime
#: (``sluice-mlflow``, format ``mlflow``) loads; the others are KServe's built-in formats, served
#: only if the repository adds a ServingRuntime for them.
FLAVOUR_FORMATS = {
    "python_function": "mlflow",
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "onnx": "onnx",
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
    "pytorch": "pytorch",
}
RUNTIME_DIR = "manifests/serving-runtime"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class ServingRuntime:
    """A (Cluster)ServingRuntime of the repository: its name, formats and protocols."""

    name: str
    formats: tuple[str, ...]
    protocols: tuple[str, ...]


@dataclass(frozen=True)
class Onboarding:
    """What ``init`` writes for one model in one environment."""

    model: str
    environment: str
    version: int
    inference_service: str
    flavours: tuple[str, ...]
    model_format: str
    runtime: ServingRuntime
    rows: tuple[dict[str, object], ...]
    rows_from: str  # "input example" or "signature"


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def _load(path: Path) -> Any:
    try:
        return _yaml().load(path.read_text(encoding="utf-8"))
    except Exception as exc:  # ruamel raises many types; all mean "not YAML we can edit"
        raise ManifestInvalid(f"{path} is not valid YAML ({exc}); fix it") from None


def _dump(document: Any) -> str:
    out = StringIO()
    _yaml().dump(document, out)
    return out.getvalue()


def serving_runtimes(directory: Path) -> list[ServingRuntime]:
    """The ServingRuntimes and ClusterServingRuntimes defined in ``directory``'s YAML files."""
    paths = sorted(directory.glob("*.y*ml")) if directory.is_dir() else []
    return runtimes_in(path.read_text(encoding="utf-8") for path in paths)


def runtimes_in(texts: Iterable[str]) -> list[ServingRuntime]:
    """The ServingRuntimes and ClusterServingRuntimes among YAML documents."""
    found = []
    for text in texts:
        try:
            documents = list(YAML(typ="safe").load_all(text))
        except Exception:  # noqa: S112 - a file kustomize would refuse is not a runtime
            continue
        for doc in documents:
            kind = str(doc.get("kind", "")) if isinstance(doc, dict) else ""
            if not kind.endswith("ServingRuntime"):
                continue
            spec = doc.get("spec") or {}
            formats = tuple(
                str(f.get("name")) for f in spec.get("supportedModelFormats") or [] if f
            )
            protocols = tuple(str(p) for p in spec.get("protocolVersions") or [])
            found.append(ServingRuntime(str(doc["metadata"]["name"]), formats, protocols))
    return found


def choose_format(
    model: str, version: int, flavours: Sequence[str], runtimes: Sequence[ServingRuntime]
) -> tuple[str, ServingRuntime]:
    """The first of the version's model formats a runtime serves, with that runtime;
    :class:`InputError` naming the flavours and the served formats when none is served."""
    wanted = [FLAVOUR_FORMATS[f] for f in flavours if f in FLAVOUR_FORMATS]
    for model_format in wanted:
        for runtime in runtimes:
            if model_format in runtime.formats:
                return model_format, runtime
    served = sorted({f for runtime in runtimes for f in runtime.formats})
    raise InputError(
        f"{model} v{version} has flavour(s) {', '.join(flavours) or 'none'}, which no "
        f"ServingRuntime in {RUNTIME_DIR}/ serves (served formats: "
        f"{', '.join(served) or 'none'}); log the model with a python_function flavour "
        "(any mlflow.<flavour>.log_model has one) or add a ServingRuntime for its format"
    )


def inference_service_name(model: str) -> str:
    """The model's name as a Kubernetes name (lower case, ``-`` for anything else)."""
    name = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")[:45].strip("-")
    if not _DNS_LABEL.fullmatch(name):
        raise InputError(
            f"model name {model!r} makes no InferenceService name (lower-case letters, digits "
            "and '-'); register the model under such a name"
        )
    return name


def request_body(rows: Sequence[Mapping[str, object]], count: int = 3) -> str:
    """A V1 ``:predict`` body of the first ``count`` rows, as ``curl -d @FILE`` sends it."""
    return json.dumps({"instances": [dict(r) for r in rows[:count]]}, indent=1) + "\n"


_BASE = """\
# {name}'s InferenceService, shared by every environment; written by `sluice init` from
# {model} v{version} (MLflow flavours: {flavours}).
# Each overlay pins the model version (storageUri and sluice.dev/* annotations) in its own
# {name}.yaml; Sluice edits only that file.
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
  labels:
    app.kubernetes.io/name: {name}
    app.kubernetes.io/part-of: sluice
  annotations:
    # Tag routes (latest-…, prev-…) let a load test reach the canary revision alone.
    serving.kserve.io/enable-tag-routing: "true"
    serving.kserve.io/deploymentMode: Serverless
spec:
  predictor:
    minReplicas: 1
    model:
      modelFormat:
        name: {model_format}
      runtime: {runtime}
      protocolVersion: {protocol}
      resources:
        requests:
          cpu: 500m
          memory: 1Gi
        limits:
          cpu: "1"
          memory: 2Gi
"""

_PIN = """\
# Model pin for {environment}, written by `sluice propose --env {environment}`; review it in the
# pull request. No version is pinned yet: the first proposal sets storageUri and the
# sluice.dev/* annotations.
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
  annotations:
    sluice.dev/model-name: {model}
spec:
  predictor:
    model:
      modelFormat:
        name: {model_format}
"""


def _policy_comment(plan: Onboarding, config: Any) -> str:
    policy = config.rollout
    steps = ", ".join(str(s) for s in policy.steps)
    text = (
        f"{plan.model}: added by `sluice init` from v{plan.version} (flavours "
        f"{', '.join(plan.flavours)}; modelFormat {plan.model_format}, runtime "
        f"{plan.runtime.name}). It rolls out under this environment's policy (`rollout:`, "
        f"see `sluice config schema environment`), now: steps [{steps}] after a first deploy "
        f"at 100%, an analysis every {policy.interval_seconds:g} s, rolled back after "
        f"{policy.failure_limit} failed or {policy.inconclusive_limit} inconclusive analyses, "
        f"{policy.progress_deadline_seconds:g} s to make progress. Its smoke and load test "
        f"send rows of each version's {plan.rows_from} (as in manifests/base/"
        f"{plan.inference_service}.request.json). Drift is monitored only for versions whose "
        "training run logged reference_profile.json (controller.training)."
    )
    return textwrap.fill(text, width=94)


def _write(path: Path, text: str, root: Path, changed: list[str]) -> None:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    changed.append(str(path.relative_to(root)))


def _ensure_listed(path: Path, key: str, entry: Any, root: Path, changed: list[str]) -> None:
    """Append ``entry`` to the list ``key`` of a kustomization, unless it is there."""
    document = _load(path)
    if not isinstance(document, CommentedMap):
        raise ManifestInvalid(f"{path} is not a kustomization mapping; fix it")
    items = document.get(key)
    if items is None:
        items = document[key] = CommentedSeq()
    if entry in list(items):
        return
    items.append(entry)
    _write(path, _dump(document), root, changed)


def _check_existing(path: Path, plan: Onboarding, what: str) -> None:
    document = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    model = ((document.get("spec") or {}).get("predictor") or {}).get("model") or {}
    existing = (model.get("modelFormat") or {}).get("name")
    if existing is not None and existing != plan.model_format:
        raise ConfigError(
            f"{path.name} already exists as {what} with modelFormat {existing!r}, not "
            f"{plan.model_format!r} ({plan.model} v{plan.version}); nothing was written: "
            "change or remove that file, or onboard under another model name"
        )


def scaffold_release(root: Path, plan: Onboarding) -> list[str]:
    """Write the release of ``plan`` into the repository at ``root``; the paths it changed
    (none when everything is already there). Raises before writing anything when a file
    already says something else."""
    overlay = root / "manifests" / "overlays" / plan.environment
    base = root / "manifests" / "base"
    env_file = overlay / ENVIRONMENT_FILE
    if not env_file.is_file():
        known = sorted(p.name for p in (root / "manifests" / "overlays").glob("*") if p.is_dir())
        raise ConfigError(
            f"unknown environment {plan.environment!r}: manifests/overlays/{plan.environment}/"
            f"{ENVIRONMENT_FILE} does not exist (known: {', '.join(known) or 'none'}); give one "
            "of them (--env) or create the repository with `sluice init --repo DIR --env ENV`"
        )
    text = env_file.read_text(encoding="utf-8")
    config = parse_environment(text, source=str(env_file), environment=plan.environment)
    name, pin = plan.inference_service, f"{plan.inference_service}.yaml"
    existing = next((r for r in config.releases if r.model == plan.model), None)
    if existing is not None and (existing.inference_service, existing.pin) != (name, pin):
        raise ConfigError(
            f"{plan.environment} already has a release of {plan.model} (inferenceService "
            f"{existing.inference_service}, pin {existing.pin}), not {name}/{pin}; nothing was "
            f"written: edit or remove it in manifests/overlays/{plan.environment}/"
            f"{ENVIRONMENT_FILE} first"
        )
    clash = next((r for r in config.releases if r.inference_service == name), None)
    if clash is not None and clash.model != plan.model:
        raise ConfigError(
            f"{plan.environment} already serves {clash.model} as InferenceService {name}; "
            "nothing was written: register the model under another name"
        )
    # Check every existing file before the first write, so a refusal writes nothing.
    for path, what in ((base / pin, "the base"), (overlay / pin, "the pin")):
        if path.exists():
            _check_existing(path, plan, what)

    comment = _policy_comment(plan, config)
    changed: list[str] = []
    fields = {
        "name": name,
        "model": plan.model,
        "version": plan.version,
        "environment": plan.environment,
        "flavours": ", ".join(plan.flavours),
        "model_format": plan.model_format,
        "runtime": plan.runtime.name,
        "protocol": "v2" if "v2" in plan.runtime.protocols or not plan.runtime.protocols else "v1",
    }
    if not (base / pin).exists():
        _write(base / pin, _BASE.format(**fields), root, changed)
    if not (base / "kustomization.yaml").exists():
        _write(
            base / "kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n",
            root,
            changed,
        )
    _ensure_listed(base / "kustomization.yaml", "resources", pin, root, changed)
    body = base / f"{name}.request.json"
    if not body.exists():
        _write(body, request_body(plan.rows), root, changed)
    if not (overlay / pin).exists():
        _write(overlay / pin, _PIN.format(**fields), root, changed)
    patch = CommentedMap([("path", pin)])
    kustomization = overlay / "kustomization.yaml"
    patches = (_load(kustomization) or {}).get("patches") or []
    if not any(isinstance(p, Mapping) and p.get("path") == pin for p in patches):
        _ensure_listed(kustomization, "patches", patch, root, changed)
    if existing is None:
        document = _load(env_file)
        releases = document.get("releases")
        if releases is None:
            releases = document["releases"] = CommentedSeq()
        entry = CommentedMap(
            [
                ("model", plan.model),
                ("inferenceService", name),
                ("pin", pin),
                ("alias", "challenger"),
            ]
        )
        releases.append(entry)
        releases.yaml_set_comment_before_after_key(len(releases) - 1, before=comment, indent=2)
        new_text = _dump(document)
        if "rollout" not in document and _DEFAULT_POLICY.splitlines()[0] not in new_text:
            new_text += _DEFAULT_POLICY
        _write(env_file, new_text, root, changed)
    return changed


_DEFAULT_POLICY = """\
# rollout:  # the policy every release here follows; these are the defaults, uncomment to change
#   steps: [10, 50, 100]      # canaryTrafficPercent after the first deploy (100% at once)
#   interval: 30              # seconds between analyses
#   failureLimit: 1           # failed analyses before a rollback
#   inconclusiveLimit: 5      # inconclusive analyses before a rollback
#   errorLimit: 4             # analyses a broken tool may spoil before the rollout aborts
#   progressDeadline: 600     # seconds a step may take to become ready
"""
