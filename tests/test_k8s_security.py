"""Network policies, service account tokens and RBAC of the rendered manifests (issue #14).

    .venv/bin/pytest tests/test_k8s_security.py -q

NetworkPolicy semantics are evaluated here as the API documents them (a pod selected by any
Ingress policy accepts only what one of those policies allows; peers by pod and namespace labels;
ports), over the pods the manifests create, with their labels from the pod templates.
"""

from __future__ import annotations

import pytest
import yaml
from k8s_manifests import (
    OVERLAYS,
    by_kind,
    executor_pod,
    pod_templates,
    render,
    render_on_demand,
)

SPARK_DRIVER_SA = "radgpt-spark-driver"


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param) + render_on_demand(request.param)


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against a label set."""
    if selector.get("matchLabels", {}).items() - labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        has, value = e["key"] in labels, labels.get(e["key"])
        ok = {"In": has and value in e.get("values", []),
              "NotIn": not has or value not in e.get("values", []),
              "Exists": has, "DoesNotExist": not has}[e["operator"]]  # fmt: skip
        if not ok:
            return False
    return True


class Cluster:
    """Pods (namespace, labels) and the ingress policies of the radgpt namespace."""

    def __init__(self, docs: list[dict]):
        self.ns = by_kind(docs, "Namespace")[0]["metadata"]["name"]
        self.policies = [
            p for p in by_kind(docs, "NetworkPolicy") if "Ingress" in p["spec"]["policyTypes"]
        ]
        self.ns_labels = {self.ns: {"kubernetes.io/metadata.name": self.ns}}
        self.pods: dict[str, tuple[str, dict]] = {}
        for d in [*docs, executor_pod(docs)]:
            for labels, _ in pod_templates(d):
                self.pods[labels["app.kubernetes.io/component"]] = (self.ns, labels)

    def add(self, name: str, ns: str, labels: dict, ns_labels: dict | None = None) -> None:
        self.pods[name] = (ns, labels)
        self.ns_labels.setdefault(ns, {"kubernetes.io/metadata.name": ns, **(ns_labels or {})})

    def peer(self, peer: dict, src: tuple[str, dict]) -> bool:
        ns, labels = src
        if "ipBlock" in peer:
            return False  # pods are not addressed by ipBlock here
        if "namespaceSelector" in peer:
            if not selects(peer["namespaceSelector"], self.ns_labels[ns]):
                return False
        elif ns != self.ns:
            return False  # a podSelector alone means pods of the policy's namespace
        return selects(peer.get("podSelector", {}), labels)

    def allowed(self, src: str, dst: str, port: int) -> bool:
        dst_ns, dst_labels = self.pods[dst]
        assert dst_ns == self.ns
        policies = [p for p in self.policies if selects(p["spec"]["podSelector"], dst_labels)]
        if not policies:
            return True
        for p in policies:
            for rule in p["spec"].get("ingress", []):
                peers, ports = rule.get("from"), rule.get("ports")
                if peers and not any(self.peer(q, self.pods[src]) for q in peers):
                    continue
                if ports and not any(q.get("protocol", "TCP") == "TCP" and q["port"] == port
                                     for q in ports):  # fmt: skip
                    continue
                return True
        return False


def test_network_policy_keeps_reports_inside(rendered):
    """Egress: every pod may reach only pods of the namespace and DNS; Spark drivers the API."""
    _, docs = rendered
    pols = [p for p in by_kind(docs, "NetworkPolicy") if "Egress" in p["spec"]["policyTypes"]]
    assert any(p["spec"]["podSelector"] == {} for p in pols)
    dns = False
    for p in pols:
        for rule in p["spec"]["egress"]:
            for peer in rule["to"]:  # no rule without `to`: that would allow every destination
                assert set(peer) <= {"podSelector", "namespaceSelector", "ipBlock"}, peer
                if "ipBlock" in peer:  # only single addresses (the API server), never 0.0.0.0/0
                    assert peer["ipBlock"]["cidr"].endswith("/32")
                    assert "except" not in peer["ipBlock"]
                    assert p["spec"]["podSelector"] != {}, "API server egress: Spark drivers only"
            dns |= {q["port"] for q in rule.get("ports", [])} == {53}
    assert dns
    (api,) = [p for p in pols if p["spec"]["podSelector"] != {}]
    drivers = [labels for d in docs for labels, s in pod_templates(d)
               if s.get("serviceAccountName", s.get("serviceAccount")) == SPARK_DRIVER_SA]  # fmt: skip
    assert len(drivers) == 2  # the nightly pod and the backfill driver may reach the API server
    assert all(selects(api["spec"]["podSelector"], labels) for labels in drivers)


def test_ingress_only_the_nightly_job_and_named_clients_reach_serve(rendered):
    _, docs = rendered
    c = Cluster(docs)
    assert any(p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") for p in c.policies)
    client = {"radgpt/serve-client": "true"}
    c.add("client", "ris", client, ns_labels=client)  # a named client in a named namespace
    c.add("client-here", c.ns, client)  # a named client in this namespace
    c.add("stranger", "ris", {"app": "x"})  # unlabelled pod, named namespace
    c.add("client-elsewhere", "other", client)  # labelled pod, namespace not named
    c.add("debug", c.ns, {"app": "debug"})  # anything else in this namespace
    c.add("kuberay", "kuberay-system", {"app.kubernetes.io/name": "kuberay-operator"})
    c.add("fake-kuberay", "other", {"app.kubernetes.io/name": "kuberay-operator"})
    yes = [
        ("nightly", "serve-worker", 8000), ("nightly", "serve-head", 8000),
        ("nightly", "serve-head", 10001),  # drafting through the Ray client
        ("client", "serve-worker", 8000), ("client", "serve-head", 8000),
        ("client-here", "serve-worker", 8000),
        ("kuberay", "serve-head", 8265), ("kuberay", "train-head", 8265),
        ("serve-worker", "serve-head", 6379), ("serve-head", "serve-worker", 40123),
        ("serve-worker", "serve-worker", 40123),
        ("train-worker", "train-head", 6379), ("train-head", "train-worker", 29500),
        ("train-submitter", "train-head", 8265),
        ("spark-executor", "nightly", 7078), ("nightly", "spark-executor", 7079),
        ("spark-executor", "spark-executor", 7079),
        ("ingest-driver", "spark-executor", 7079), ("spark-executor", "ingest-driver", 7078),
    ]  # fmt: skip
    no = [
        ("spark-executor", "serve-worker", 8000), ("spark-executor", "serve-head", 10001),
        ("debug", "serve-worker", 8000), ("train-submitter", "serve-head", 8000),
        ("stranger", "serve-worker", 8000), ("client-elsewhere", "serve-worker", 8000),
        ("client", "serve-head", 10001), ("client", "serve-head", 8265),
        ("client", "serve-head", 6379), ("nightly", "serve-head", 8265),  # job submission
        ("fake-kuberay", "serve-head", 8265), ("kuberay", "serve-head", 10001),
        ("train-worker", "serve-head", 6379), ("serve-worker", "train-head", 6379),
        ("train-submitter", "train-worker", 52365), ("nightly", "train-head", 8265),
        ("serve-head", "nightly", 7078), ("debug", "spark-executor", 7079),
        ("serve-worker", "train-submitter", 1234), ("client", "nightly", 4040),
    ]  # fmt: skip
    assert [t for t in yes if not c.allowed(*t)] == []
    assert [t for t in no if c.allowed(*t)] == []
    assert {"nightly", "serve-head", "serve-worker", "train-head", "train-worker",
            "train-submitter", "spark-executor", "ingest-driver"} <= set(c.pods)  # fmt: skip


def test_api_token_only_in_spark_driver_pods(rendered):
    """automountServiceAccountToken: false on every pod but the Spark drivers (they create their
    executor pods); they alone run as the ServiceAccount the Role is bound to."""
    _, docs = rendered
    accounts = {sa["metadata"]["name"]: sa for sa in by_kind(docs, "ServiceAccount")}
    assert accounts["radgpt"]["automountServiceAccountToken"] is False
    assert accounts[SPARK_DRIVER_SA]["automountServiceAccountToken"] is True
    drivers, others = 0, 0
    for d in [*docs, executor_pod(docs)]:
        for labels, spec in pod_templates(d):
            sa = spec.get("serviceAccountName", spec.get("serviceAccount"))
            if labels.get("radgpt/spark-driver") == "true":
                drivers += 1
                assert sa == SPARK_DRIVER_SA and spec.get("automountServiceAccountToken", True)
            else:
                others += 1
                assert sa == "radgpt", (d["kind"], labels)
                # SparkApplication pods have no such field: the account's `false` applies there
                if d["kind"] != "SparkApplication":
                    assert spec["automountServiceAccountToken"] is False, (d["kind"], labels)
    assert (drivers, others) == (2, 7)
    # the executor pods Spark creates (prod: executor pods; local: none, Spark runs in the pod)
    (cm,) = by_kind(docs, "ConfigMap")
    conf = yaml.safe_load(cm["data"]["cluster.yaml"])["spark"].get("conf", {})
    assert (
        conf.get("spark.kubernetes.authenticate.executor.serviceAccountName", "radgpt") == "radgpt"
    )
    assert conf.get("spark.kubernetes.authenticate.driver.serviceAccountName", SPARK_DRIVER_SA) == (
        SPARK_DRIVER_SA
    )


def test_role_is_what_the_spark_driver_needs(rendered):
    _, docs = rendered
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    (role,) = by_kind(docs, "Role")
    rules = {r["resources"][0]: set(r["verbs"]) for r in role["rules"]}
    assert all(r["apiGroups"] == [""] and len(r["resources"]) == 1 for r in role["rules"])
    deletes = {"get", "list", "delete", "deletecollection"}
    assert rules == {
        "pods": {"create", "watch", "patch"} | deletes,
        "configmaps": {"create"} | deletes,
        "persistentvolumeclaims": {"create"} | deletes,
        "services": deletes,
    }
    (binding,) = by_kind(docs, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}  # fmt: skip
    ns = by_kind(docs, "Namespace")[0]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SPARK_DRIVER_SA, "namespace": ns}
    ]
