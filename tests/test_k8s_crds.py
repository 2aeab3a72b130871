"""RayJob, RayService and SparkApplication against the operators' real CRD schemas (tests/crds/).

    .venv/bin/pytest tests/test_k8s_crds.py -q

The schemas are KubeRay v1.6.2's and spark-operator v2.2.0's, vendored (README there), validated
with `jsonschema`, unknown fields rejected where the CRD does not preserve them. Core kinds are
checked against the Kubernetes OpenAPI models (tests/k8s_manifests.py).
"""

from __future__ import annotations

import copy
import json
import re
import sys

import pytest
import yaml
from k8s_manifests import (
    CRD_FILES,
    CRDS,
    OVERLAYS,
    REPO,
    base_resources,
    by_kind,
    crd_errors,
    render,
    render_on_demand,
    validate,
)

UPSTREAM = REPO.parent / "shared" / "k8s-crds"


def custom_resources() -> dict[str, dict]:
    return {d["kind"]: d for d in base_resources() if d["kind"] in CRD_FILES}


def mappings(node, path=()):
    """(path, dict) of every mapping inside a manifest, itself included."""
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from mappings(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from mappings(v, (*path, i))


def test_vendored_schemas_match_upstream():
    if not UPSTREAM.is_dir():
        pytest.skip(f"{UPSTREAM} absent: the vendored copies stand alone")
    sys.path.insert(0, str(CRDS))
    try:
        import extract
    finally:
        sys.path.remove(str(CRDS))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for out, src in extract.SOURCES.items():
        crd = yaml.load((UPSTREAM / src).read_text(), Loader=loader)
        assert (CRDS / out).read_text() == extract.render(crd), (
            f"re-run tests/crds/extract.py: {out}"
        )
    assert set(extract.SOURCES) == set(CRD_FILES.values())


def test_vendored_schemas_are_documented_and_small():
    readme = (CRDS / "README.md").read_text()
    assert "Apache License, Version 2.0" in readme and (CRDS / "LICENSE-2.0.txt").is_file()
    for kind, name in CRD_FILES.items():
        assert name in readme, name
        assert (CRDS / name).stat().st_size < 300_000, name
        data = json.loads((CRDS / name).read_text())
        assert data["kind"] == kind and "status" not in data["schema"]["properties"]
        assert custom_resources()[kind]["apiVersion"] == data["apiVersion"]


def test_custom_resources_validate_against_the_crds():
    seen = set()
    for overlay in OVERLAYS:
        for d in render(overlay) + render_on_demand(overlay):
            if d["kind"] in CRD_FILES:
                seen.add(d["kind"])
                assert crd_errors(d) == [], (overlay, d["kind"])
    assert seen == set(CRD_FILES)


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_every_field_the_crd_lacks_is_an_error(kind):
    """Insert an unknown field into every mapping of the manifest, one at a time: each must be
    rejected (a field the CRD lacks would be pruned or refused by the API server)."""
    doc = custom_resources()[kind]
    n = 0
    for path, _ in mappings(doc):
        if path[:1] == ("metadata",):
            continue  # ObjectMeta: the core model (test_validators_catch_mistakes)
        bad = copy.deepcopy(doc)
        node = bad
        for key in path:
            node = node[key]
        node["radgptNoSuchField"] = {"x": 1}  # not a string either: maps of strings reject it
        errs = crd_errors(bad)
        where = ".".join(map(str, [kind, *path]))
        assert any(e.startswith(where) for e in errs), (where, errs)
        n += 1
    assert n >= 15, n


def test_validators_catch_mistakes():
    docs = {d["kind"]: d for d in base_resources()}
    cron = copy.deepcopy(docs["CronJob"])
    cron["spec"]["concurrencyPolcy"] = "Forbid"  # typo
    del cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]  # required
    errs = validate(cron)
    assert any("concurrencyPolcy: unknown field" in e for e in errs), errs
    assert any("containers" in e for e in errs), errs
    app = copy.deepcopy(docs["SparkApplication"])
    app["spec"]["driver"]["cpus"] = 1
    app["spec"]["executor"]["instances"] = "4"  # an integer in the CRD
    del app["spec"]["mainApplicationFile"]
    errs = validate(app)
    assert any("driver: Additional properties" in e and "'cpus'" in e for e in errs), errs
    assert any("executor.instances: '4' is not of type 'integer'" in e for e in errs), errs
    assert any("'mainApplicationFile' is a required property" in e for e in errs), errs
    job = copy.deepcopy(docs["RayJob"])
    rc = job["spec"]["rayClusterSpec"]
    rc["workerGroupSpecs"][0]["rayStartParams"] = {"num-gpus": 1}
    rc["headGroupSpec"]["template"]["spec"]["containers"][0]["imag"] = "x"
    rc["authOptions"]["mode"] = "password"
    del rc["workerGroupSpecs"][0]["groupName"]
    job["metadata"]["labelz"] = {}
    errs = validate(job)
    assert any("rayStartParams.num-gpus: 1 is not of type 'string'" in e for e in errs), errs
    assert any("containers.0: Additional properties" in e and "'imag'" in e for e in errs), errs
    assert any("authOptions.mode: 'password' is not one of" in e for e in errs), errs
    assert any("'groupName' is a required property" in e for e in errs), errs
    assert any("labelz: unknown field of V1ObjectMeta" in e for e in errs), errs
    svc = copy.deepcopy(docs["RayService"])
    svc["spec"]["serveConfigV2"] = "applications: [{name: x, route_prefix: /}]"  # no import_path
    assert any("import_path" in e for e in validate(svc))


def test_fields_with_cel_rules_are_flagged():
    """CEL rules (x-kubernetes-validations) are not evaluated offline: using such a field fails
    here until a server-side dry run has been done and this test adjusted."""
    job = copy.deepcopy(custom_resources()["RayJob"])
    job["spec"]["managedBy"] = "ray.io/kuberay-operator"
    assert any("spec.managedBy: field guarded by CEL" in e for e in crd_errors(job))


def test_kuberay_and_spark_operator_versions():
    """The manifests need KubeRay >= 1.6.0 (authOptions.secretName; 1.5.x prunes it, and the Ray
    token of the pods then no longer matches the Secret the nightly job uses) and a RayJob
    `suspend`; docs/operations.md must say so."""
    for overlay in OVERLAYS:
        docs = render(overlay)
        for d in by_kind(docs, "RayJob") + by_kind(docs, "RayService"):
            rc = d["spec"].get("rayClusterSpec") or d["spec"]["rayClusterConfig"]
            assert rc["authOptions"]["secretName"] == "radgpt-ray-token"
    schema = json.loads((CRDS / CRD_FILES["RayJob"]).read_text())["schema"]["properties"]["spec"]
    auth = schema["properties"]["rayClusterSpec"]["properties"]["authOptions"]["properties"]
    assert "secretName" in auth and schema["properties"]["suspend"] == {"type": "boolean"}
    ops = (REPO / "docs" / "operations.md").read_text()
    assert re.search(r"KubeRay >= 1\.6(\.0)?\b", ops) and not re.search(
        r"KubeRay >= 1\.[0-5]\b", ops
    )
    assert re.search(r"spark-operator[^\n]*>= 2\.2", ops)
