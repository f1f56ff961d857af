# The image of Sluice's controller (`sluice serve`, manifests/controller/) and of its model
# server (`python -m controller.local.serving`, the ServingRuntime in
# manifests/serving-runtime/): one package, two commands.
#
#   docker build -t ghcr.io/YOUR-ORG/sluice:0.1.0 . && docker push ghcr.io/YOUR-ORG/sluice:0.1.0
#
# The versions come from pyproject.toml, whose direct dependencies are pinned; the Python minor
# version is the one the test suite runs on.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# README.md is the package's long description (pyproject.toml: readme).
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN python -m venv /opt/sluice \
    && /opt/sluice/bin/pip install . \
    && /opt/sluice/bin/pip check

FROM python:${PYTHON_VERSION}-slim
# git: Sluice reads and writes the GitOps repository with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --home-dir /home/sluice --create-home sluice
COPY --from=build /opt/sluice /opt/sluice
ENV PATH=/opt/sluice/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SLUICE_STATE_DIR=/var/lib/sluice
RUN install -d -o sluice -g sluice /var/lib/sluice
USER 10001:10001
WORKDIR /home/sluice
# 8686: sluice serve (/healthz, /metrics, /hooks/mlflow); 8080: the model server.
EXPOSE 8686 8080
CMD ["sluice", "--help"]
