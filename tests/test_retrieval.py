"""TF-IDF retriever: neighbours, self-exclusion, save/load round trip.

.venv/bin/pytest tests/test_retrieval.py -q
"""

from __future__ import annotations

import json

import pytest

from radgpt.model.retrieval import Retriever

IDS = ["a", "b", "c", "d"]
F = [
    "Right lower lobe consolidation with small effusion.",
    "The lungs are clear. Normal heart size.",
    "Left upper lobe nodule measuring 1 cm.",
    "Clear lungs, heart size normal, no effusion.",
]
IMP = ["Pneumonia.", "Normal chest.", "Pulmonary nodule.", "No acute disease."]


def test_query_ranks_by_similarity_and_excludes_self():
    r = Retriever.fit(IDS, F, IMP)
    top = r.query(["The lungs are clear. Heart size is normal."], k=2)[0]
    assert [i for _, i in top] == ["Normal chest.", "No acute disease."]
    own = r.query([F[1]], k=2, exclude_ids=["b"])[0]
    assert ("The lungs are clear. Normal heart size.", "Normal chest.") not in own
    assert own[0] == (F[3], IMP[3])
    assert r.query([F[0]], k=0) == [[]]


def test_batched_queries_keep_each_querys_exclusion():
    # more queries than one similarity block (QUERY_BATCH): exclusions stay aligned with queries
    from radgpt.model import retrieval

    n = retrieval.QUERY_BATCH + 44
    ids = [f"r{i}" for i in range(n)]
    findings = [f"Finding number w{i} with shared words about the lungs." for i in range(n)]
    r = Retriever.fit(ids, findings, [f"imp{i}" for i in range(n)])
    top = r.top(findings, k=1, exclude_ids=ids)
    assert all(t and t[0] != i for i, t in enumerate(top))  # never itself
    assert r.top(findings, k=1) == [[i] for i in range(n)]  # itself when not excluded
    assert r.top(findings[:3], k=2) == [row[:2] for row in r.top(findings[:3], k=5)]


def test_save_load_round_trip(tmp_path):
    r = Retriever.fit(IDS, F, IMP)
    r.save(tmp_path / "retrieval")
    r2 = Retriever.load(tmp_path / "retrieval")
    q = ["nodule in the lobe", "effusion"]
    assert r2.query(q, 3) == r.query(q, 3) and r2.digest == r.digest


def test_tampered_corpus_and_bad_input_are_errors(tmp_path):
    d = Retriever.fit(IDS, F, IMP).save(tmp_path / "r")
    c = json.loads((d / "corpus.json").read_text())
    c["impressions"][0] = "changed"
    (d / "corpus.json").write_text(json.dumps(c))
    with pytest.raises(ValueError, match="digest"):
        Retriever.load(d)
    with pytest.raises(FileNotFoundError):
        Retriever.load(tmp_path / "missing")
    with pytest.raises(ValueError):
        Retriever.fit(["x"], [], [])


def test_finding_aware_retrieval_prefers_neighbours_sharing_the_positive_findings():
    ids = ["n1", "n2", "e1"]
    f = [
        "The heart size is normal. The lungs are clear. No pleural effusion. No pneumothorax.",
        "Heart size is normal. Lungs are clear bilaterally. No effusion or pneumothorax seen.",
        "Moderate right pleural effusion.",
    ]
    imp = ["Normal chest.", "No acute disease.", "Right effusion."]
    r = Retriever.fit(ids, f, imp)
    q = ["The heart size is normal. The lungs are clear. Small left pleural effusion."]
    assert [i for _, i in r.query(q, k=2)[0]] == ["Normal chest.", "No acute disease."]
    aware = r.query(q, k=2, finding_weight=1.0)[0]
    assert [i for _, i in aware] == ["Right effusion.", "Normal chest."]
    # a query without positive findings keeps the plain order; the pool bounds the candidates
    normal = ["The heart is normal. The lungs are clear."]
    assert r.top(normal, 2, finding_weight=0.5) == r.top(normal, 2)
    assert r.top(q, 1, finding_weight=0.5, pool=1) == r.top(q, 1)
    assert r.top(q, 1, finding_weight=0.5, exclude_ids=["e1"]) == [[0]]
