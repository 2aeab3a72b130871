"""Kubernetes manifests: parse, render with plain kustomize, validate, match the real CLI and image.

    .venv/bin/pytest tests/test_k8s*.py -q

Helpers (rendering, walking, validators) are in tests/k8s_manifests.py. The other k8s test files:
test_k8s_crds.py (the vendored operator CRD schemas), test_k8s_security.py (NetworkPolicies,
service account tokens, RBAC), test_k8s_image.py (the Dockerfile, linted statically: no docker
engine runs here, and constraints.txt).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from k8s_manifests import (
    CONF,
    K8S,
    OVERLAYS,
    REPO,
    base_resources,
    by_kind,
    commands,
    containers,
    executor_pod,
    help_argv,
    images,
    pod_specs,
    pod_templates,
    render,
    render_on_demand,
    validate,
)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    """(overlay, objects of the overlay + objects of its on-demand kustomization)."""
    return request.param, render(request.param) + render_on_demand(request.param)


def dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", (REPO / "Dockerfile").read_text(), re.M))


def test_every_manifest_parses():
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 20
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


def test_one_config_and_plain_kustomize():
    """kustomize loads only files inside a kustomization's folder (`kubectl apply -k`, Argo CD and
    Flux have no --load-restrictor), so k8s/base holds a copy of conf/cluster.yaml: byte-equal."""
    src, copy = REPO / "conf" / "cluster.yaml", K8S / "base" / "cluster.yaml"
    assert copy.read_bytes() == src.read_bytes(), f"edit {src}, then: cp {src} {copy}"
    for kz in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kz.read_text())
        for gen in spec.get("configMapGenerator", []):
            for f in gen.get("files", []):
                path = (kz.parent / f.split("=")[-1]).resolve()
                assert path.is_relative_to(kz.parent.resolve()), (kz, f)
    for doc in [REPO / "docs" / "operations.md", *K8S.rglob("*.yaml")]:
        assert "LoadRestrictionsNone" not in doc.read_text(), doc


def test_rendered_objects_validate(rendered):
    overlay, docs = rendered
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Namespace") == 1 and "ConfigMap" in kinds, kinds
    ns = by_kind(docs, "Namespace")[0]["metadata"]["name"]
    for d in docs:
        assert validate(d) == [], (overlay, d["kind"], d["metadata"]["name"])
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == ns, d["metadata"]


def test_on_demand_objects_do_not_run_on_apply():
    """Applying an overlay starts no training (RayJob suspended) and no backfill (the
    SparkApplication, which has no suspend, lives in k8s/on-demand/<env>, applied on purpose)."""
    for overlay in OVERLAYS:
        docs, extra = render(overlay), render_on_demand(overlay)
        assert not by_kind(docs, "SparkApplication")
        (job,) = by_kind(docs, "RayJob")
        s = job["spec"]
        assert s["suspend"] is True
        # KubeRay refuses to suspend a RayJob that keeps its cluster or selects an existing one
        assert s["shutdownAfterJobFinishes"] is True and "clusterSelector" not in s
        assert [d["kind"] for d in extra] == ["SparkApplication"], extra
        ns = by_kind(docs, "Namespace")[0]["metadata"]["name"]
        assert extra[0]["metadata"]["namespace"] == ns  # the same Component site/ sets both
        # what the on-demand object needs is the overlay's, already applied
        app, names = extra[0]["spec"], {(d["kind"], d["metadata"]["name"]) for d in docs}
        assert {
            ("ServiceAccount", app[r]["serviceAccount"]) for r in ("driver", "executor")
        } <= names
        for v in app["volumes"]:
            ref = v.get("configMap", {}).get("name") or v.get("persistentVolumeClaim", {}).get(
                "claimName"
            )
            assert ref is None or ref in {n for _, n in names}, v


def test_containers_keep_the_image_entrypoint(rendered):
    """No container sets `command:`: the image ENTRYPOINT (tini, then spark-entrypoint.sh) stays
    PID 1, reaps the JVM's and Ray's children and forwards SIGTERM. KubeRay sets the command of its
    Ray containers itself (`ray start`), which the manifests leave alone."""
    _, docs = rendered
    n = 0
    for d in [*docs, executor_pod(docs)]:
        for _, spec in pod_templates(d):
            for c in containers(spec):
                n += 1
                assert "command" not in c, (d["kind"], c["name"])
    assert n >= 8
    text = (REPO / "Dockerfile").read_text()
    (entry,) = re.findall(r"^ENTRYPOINT (.+)$", text, re.M)
    assert yaml.safe_load(entry)[:2] == ["/usr/bin/tini", "--"]


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
                        assert {"cpu", "memory"} <= set(c["resources"][part]), (d["kind"], c)
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


def test_secrets_by_reference_only_and_references_resolve(rendered):
    _, docs = rendered
    assert not by_kind(docs, "Secret")  # no secret values in the repository
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for sa in by_kind(docs, "ServiceAccount"):
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
    specs += [{"volumes": app["volumes"], "serviceAccountName": app[r]["serviceAccount"]}
              for r in ("driver", "executor")]  # fmt: skip
    for s in specs:
        assert ("ServiceAccount", s["serviceAccountName"]) in names
        for v in s.get("volumes", []):
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in names
            if "persistentVolumeClaim" in v:
                assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in names
            assert "secret" not in v


def test_images_and_versions_match(rendered):
    import pyspark
    import ray

    from radgpt.config import load_config

    overlay, docs = rendered
    kz = yaml.safe_load((K8S / "overlays" / overlay / "site" / "kustomization.yaml").read_text())
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
        sas = cfg.spark.conf["spark.kubernetes.authenticate.driver.serviceAccountName"]
        assert sas == by_kind(docs, "CronJob")[0]["spec"]["jobTemplate"]["spec"]["template"][
            "spec"]["serviceAccountName"] == app["spec"]["driver"]["serviceAccount"]  # fmt: skip
        tpl = cfg.spark.conf["spark.kubernetes.executor.podTemplateFile"]
        assert (
            tpl == "/etc/radgpt/spark-executor-pod.yaml" and "spark-executor-pod.yaml" in cm["data"]
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
