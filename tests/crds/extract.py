"""Vendor the CRD schemas the k8s tests validate against (tests/crds/README.md).

    python tests/crds/extract.py [SOURCE_DIR]      # default ../shared/k8s-crds

From each operator CRD it keeps only what a manifest is validated against: the OpenAPI v3 schema of
the served storage version, without `status` (never in a manifest) and without `description`
texts (size). Nothing else is changed: strictness (`additionalProperties: false`) is added by the
tests when they load the schema, so the vendored file stays a plain subset of the upstream CRD.
tests/test_k8s_crds.py re-runs this on the sources when they are present and fails on drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent.parent / "shared" / "k8s-crds"
# vendored file -> upstream CRD file (README.md: repository, path, tag, licence)
SOURCES = {
    "ray.io_rayjobs-v1.6.2.schema.json": "ray.io_rayjobs-v1.6.2.yaml",
    "ray.io_rayservices-v1.6.2.schema.json": "ray.io_rayservices-v1.6.2.yaml",
    "sparkoperator.k8s.io_sparkapplications-v2.2.0.schema.json": (
        "sparkoperator.k8s.io_sparkapplications-v2.2.0.yaml"
    ),
}


def _strip(node):
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def extract(crd: dict) -> dict:
    """{apiVersion, kind, schema} of the storage version of one CustomResourceDefinition."""
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage")]
    schema = _strip(version["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    return {
        "apiVersion": f"{crd['spec']['group']}/{version['name']}",
        "kind": crd["spec"]["names"]["kind"],
        "schema": schema,
    }


def render(crd: dict) -> str:
    """The vendored file's text: compact JSON, sorted keys (byte-stable for the drift test)."""
    return json.dumps(extract(crd), sort_keys=True, separators=(",", ":")) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else DEFAULT_SOURCE
    for out, src in SOURCES.items():
        crd = yaml.load(
            (source / src).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
        (HERE / out).write_text(render(crd))
        print(f"{source / src} -> {HERE / out} ({(HERE / out).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
