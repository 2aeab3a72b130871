"""Helpers of the k8s tests (tests/test_k8s*.py): render, walk and validate the manifests of k8s/.

Overlays are rendered by the real kustomize inside kubectl (`kubectl kustomize`, no flags: what
`kubectl apply -k`, Argo CD and Flux do); tests that render skip when kubectl is absent.
Validation, as the API server would do it:
- core kinds key by key against the Kubernetes OpenAPI models of the `kubernetes` client (unknown
  keys, types), then deserialized by its ApiClient (required fields);
- RayJob, RayService and SparkApplication against the operators' real CRD schemas, vendored in
  tests/crds/ (README there), with the `jsonschema` validator; unknown fields are errors wherever
  the CRD does not preserve them (strict field validation, the default of `kubectl apply`).
"""

from __future__ import annotations

import functools
import itertools
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "k8s"
CRDS = Path(__file__).resolve().parent / "crds"
VENV_BIN = Path(sys.executable).parent
OVERLAYS = ["local", "prod"]
CONF = "/etc/radgpt/cluster.yaml"  # where the ConfigMap is mounted in every pod
IMAGE_ROOT = "/opt/radgpt"  # WORKDIR of the Dockerfile: the repository inside the image
CRD_FILES = {  # kind -> vendored schema (tests/crds/README.md)
    "RayJob": "ray.io_rayjobs-v1.6.2.schema.json",
    "RayService": "ray.io_rayservices-v1.6.2.schema.json",
    "SparkApplication": "sparkoperator.k8s.io_sparkapplications-v2.2.0.schema.json",
}


# ---- rendering ---------------------------------------------------------------------------------


@functools.cache
def _kustomize(path: str) -> str:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with built-in kustomize) not installed")
    out = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr  # plain kustomize: no --load-restrictor
    return out.stdout


def kustomize(path: Path) -> list[dict]:
    """The objects `kubectl apply -k path` would send (fresh copies: tests may edit them)."""
    return [d for d in yaml.safe_load_all(_kustomize(str(path))) if d]


def render(overlay: str) -> list[dict]:
    return kustomize(K8S / "overlays" / overlay)


def render_on_demand(overlay: str) -> list[dict]:
    return kustomize(K8S / "on-demand" / overlay)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def executor_pod(docs: list[dict]) -> dict:
    """The Spark executor pod template shipped in the rendered ConfigMap radgpt-conf."""
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "radgpt-conf"]
    return yaml.safe_load(cm["data"]["spark-executor-pod.yaml"])


def _resources(folder: Path) -> list[dict]:
    kz = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return [d for f in kz["resources"] for d in yaml.safe_load_all((folder / f).read_text()) if d]


def base_resources() -> list[dict]:
    """Every object of k8s/base and k8s/on-demand/ingest as written, plus the executor template."""
    docs = _resources(K8S / "base") + _resources(K8S / "on-demand" / "ingest")
    return docs + [yaml.safe_load((K8S / "base" / "spark-executor-pod.yaml").read_text())]


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


def pod_templates(doc: dict) -> list[tuple[dict, dict]]:
    """(labels, PodSpec-like) of every pod an object creates, SparkApplication driver/executor too."""
    s, kind = doc.get("spec", {}), doc["kind"]
    if kind == "SparkApplication":
        return [(s[r].get("labels", {}), s[r]) for r in ("driver", "executor")]
    if kind == "CronJob":
        t = s["jobTemplate"]["spec"]["template"]
        return [(t["metadata"]["labels"], t["spec"])]
    if kind == "Pod":
        return [(doc["metadata"]["labels"], s)]
    if kind in ("RayJob", "RayService"):
        rc = s["rayClusterSpec" if kind == "RayJob" else "rayClusterConfig"]
        ts = [rc["headGroupSpec"]["template"]] + [w["template"] for w in rc["workerGroupSpecs"]]
        ts += [s["submitterPodTemplate"]] if "submitterPodTemplate" in s else []
        return [(t["metadata"]["labels"], t["spec"]) for t in ts]
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


# ---- validators: core kinds --------------------------------------------------------------------

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


# ---- validators: custom resources --------------------------------------------------------------


def _strict(node: dict) -> dict:
    """The schema as the API server applies it: an object schema that neither declares
    additionalProperties nor x-kubernetes-preserve-unknown-fields knows all its fields (the API
    server prunes others, or rejects them under strict field validation)."""
    node = dict(node)
    if "properties" in node:
        node["properties"] = {k: _strict(v) for k, v in node["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _strict(node[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            node[key] = [_strict(x) for x in node[key]]
    if (
        node.get("type") == "object"
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    return node


@functools.cache
def crd_validator(kind: str):
    """(apiVersion, jsonschema validator) of a custom resource kind, from tests/crds/."""
    from jsonschema import Draft202012Validator, ValidationError, validators

    data = json.loads((CRDS / CRD_FILES[kind]).read_text())
    schema = _strict(data["schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by k8s_errors

    def cel(validator, rules, instance, schema):
        # CEL is not evaluated here: a manifest using such a field is a deliberate decision
        yield ValidationError(
            f"field guarded by CEL rules {[r['rule'] for r in rules]}: not checked offline, "
            "check with `kubectl apply --dry-run=server` and allow it in tests/test_k8s_crds.py"
        )

    cls = validators.extend(Draft202012Validator, {"x-kubernetes-validations": cel})
    cls.check_schema(schema)
    return data["apiVersion"], cls(schema)


def crd_errors(doc: dict) -> list[str]:
    kind = doc["kind"]
    api, validator = crd_validator(kind)
    errs = [] if doc.get("apiVersion") == api else [f"{kind}: apiVersion must be {api}"]
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        errs.append(f"{'.'.join(map(str, [kind, *e.absolute_path]))}: {e.message}")
    meta = doc.get("metadata")
    return errs + [f"{kind}.metadata: {e}" for e in k8s_errors(meta or {}, "V1ObjectMeta")]


def validate(doc: dict) -> list[str]:
    """Errors of one object against its API schema (see the module docstring), plus the contents
    KubeRay parses out of strings: serveConfigV2 (Ray Serve's own schema) and runtimeEnvYAML."""
    from ray.serve.schema import ServeDeploySchema

    kind, spec = doc["kind"], doc.get("spec", {})
    if kind not in CRD_FILES:
        return k8s_errors(doc)
    errs = crd_errors(doc)
    if kind == "RayJob" and not isinstance(
        yaml.safe_load(spec.get("runtimeEnvYAML") or "{}"), dict
    ):
        errs.append("RayJob.spec.runtimeEnvYAML: not a YAML mapping")
    if kind == "RayService":
        try:
            ServeDeploySchema.model_validate(yaml.safe_load(spec["serveConfigV2"]))
        except Exception as e:  # pydantic ValidationError
            errs.append(f"RayService.spec.serveConfigV2: {e}")
    return errs
