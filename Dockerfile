# Sluice's three images, from one package:
#   controller   (the default) `sluice serve` and `sluice rollout`: manifests/controller/
#   model-server `python -m controller.local.serving`, the ServingRuntime in
#                manifests/serving-runtime/; it adds the `local` extra (KServe's ModelServer)
#   graph-router `python -m controller.local.kserve_graph_router`, KServe's InferenceGraph
#                router replaced by Sluice's (the `router` image of KServe's
#                inferenceservice-config ConfigMap, README "InferenceGraphs on a cluster");
#                it adds the `graph` extra (gjson-py, GPL-3.0-or-later: this image, unlike the
#                other two, ships GPL code) and the router's event loop and HTTP parser
#
#   docker build -t ghcr.io/YOUR-ORG/sluice:0.1.0 . && docker push ghcr.io/YOUR-ORG/sluice:0.1.0
#   docker build --target model-server -t ghcr.io/YOUR-ORG/sluice-model-server:0.1.0 .
#   docker build --target graph-router -t ghcr.io/YOUR-ORG/sluice-graph-router:0.1.0 .
#
# Every version comes from requirements.lock (pyproject.toml pins the direct dependencies;
# `make lock` writes the lock); the Python minor version is the one the test suite runs on.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# README.md is the package's long description (pyproject.toml: readme).
COPY pyproject.toml README.md requirements.lock ./
COPY controller ./controller
RUN python -m venv /opt/sluice \
    && /opt/sluice/bin/pip install --constraint requirements.lock . \
    && /opt/sluice/bin/pip check \
    && python -m venv /opt/sluice-model-server \
    && /opt/sluice-model-server/bin/pip install --constraint requirements.lock '.[local]' \
    && /opt/sluice-model-server/bin/pip check \
    && python -m venv /opt/sluice-graph-router \
    && /opt/sluice-graph-router/bin/pip install --constraint requirements.lock \
        '.[graph]' httptools uvloop \
    && /opt/sluice-graph-router/bin/pip check

FROM python:${PYTHON_VERSION}-slim AS runtime
# git: Sluice reads and writes the GitOps repository with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --home-dir /home/sluice --create-home sluice
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SLUICE_STATE_DIR=/var/lib/sluice
RUN install -d -o sluice -g sluice /var/lib/sluice
USER 10001:10001
WORKDIR /home/sluice

FROM runtime AS model-server
COPY --from=build /opt/sluice-model-server /opt/sluice
ENV PATH=/opt/sluice/bin:$PATH
# 8080: the model server's HTTP port (V1 and V2 protocols).
EXPOSE 8080
CMD ["python", "-m", "controller.local.serving", "--help"]

FROM runtime AS graph-router
COPY --from=build /opt/sluice-graph-router /opt/sluice
ENV PATH=/opt/sluice/bin:$PATH
# 8080: KServe's router port (the graph, /readyz, and Sluice's /metrics). KServe's controller
# gives the container only args (--graph-json JSON), which follow this entrypoint. It runs the
# pod read-only as non-root: the runtime stage's user and PYTHONDONTWRITEBYTECODE suit that.
EXPOSE 8080
ENTRYPOINT ["python", "-m", "controller.local.kserve_graph_router"]

FROM runtime AS controller
COPY --from=build /opt/sluice /opt/sluice
ENV PATH=/opt/sluice/bin:$PATH
# 8686: sluice serve (/, /healthz, /metrics, /hooks/mlflow).
EXPOSE 8686
CMD ["sluice", "--help"]
