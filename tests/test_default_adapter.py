"""The shipped default adapter (models/iu-default) drafts real IU test reports on CPU and carries
their abnormal findings into the Impression more often than the nearest-neighbour baseline, without
inventing findings for normal reports; its reads_normal model separates the validate split.
Reads ../shared/data (skipped when absent); slow:
Spark ingest of the IU CSV, SmolLM2 import, CPU drafting.

    .venv/bin/pytest tests/test_default_adapter.py -q -m slow
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ADAPTER = REPO / "models" / "iu-default"
# findings a draft must not lose (the labeler's positive observations other than No Finding)
ABNORMAL = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Edema", "Consolidation",
            "Lung Opacity", "Atelectasis", "Fracture", "Lung Lesion", "Pneumonia")  # fmt: skip


@pytest.mark.slow
@pytest.mark.data
def test_shipped_adapter_carries_abnormal_findings(iu_csv, spark, tmp_path):
    import pyarrow.compute as pc

    from radgpt.config import load_config
    from radgpt.draft.drafter import generate
    from radgpt.ingest.run import run_ingest
    from radgpt.model.base import ensure_default_model
    from radgpt.model.labeler import POS, label
    from radgpt.model.retrieval import Retriever
    from radgpt.model.spec import AdapterRecord, ModelSpec
    from radgpt.table import read_reports

    sets = {"paths.root": str(tmp_path), "ingest.inputs": [str(iu_csv)]}
    cfg = load_config(REPO / "conf" / "local.yaml", overrides=sets, env={})
    assert cfg.model_path(cfg.model.adapter).resolve() == ADAPTER  # `make run` drafts with it
    rec = AdapterRecord.load(ADAPTER)
    assert rec.retrieval_k == 3 and not (ADAPTER / "retrieval" / "corpus.json").exists()
    ensure_default_model(cfg)
    run_ingest(cfg, spark=spark)
    spec = ModelSpec.resolve(cfg, ADAPTER)  # base hash = the record's; corpus = IU train split
    trained = json.loads((ADAPTER / "retrieval" / "retriever.json").read_text())["digest"]
    assert spec.retrieval_digest == trained == "8fb471b0394f76a9"  # the training corpus

    t = read_reports(cfg)
    t = t.filter(pc.and_(pc.equal(t["split"], "test"), pc.equal(t["eligible"], True)))
    rows = sorted(t.select(["report_id", "findings", "impression"]).to_pylist(),
                  key=lambda r: r["report_id"])  # fmt: skip

    def pos(text):
        return {o for o, s in label(text).items() if s == POS and o in ABNORMAL}

    # known abnormal reports: Findings and reference Impression state the same abnormal finding
    known = [(r, pos(r["findings"]) & pos(r["impression"])) for r in rows]
    known = [(r, want) for r, want in known if want][:30]
    normal = [r for r in rows if label(r["impression"])["No Finding"] == POS][:10]
    assert len(known) == 30 and len(normal) == 10
    drafts = generate(cfg, [r["findings"] for r, _ in known] + [r["findings"] for r in normal])
    carried = sum(bool(want & pos(d)) for (_, want), d in zip(known, drafts, strict=False))
    # the nearest-neighbour baseline on the same reports: the Impression of the closest train report
    nn = Retriever.from_table(cfg.path("table")).query([r["findings"] for r, _ in known], 1)
    nn_carried = sum(bool(want & pos(q[0][1])) for (_, want), q in zip(known, nn, strict=True))
    # measured: 13/30 carried (nearest neighbour 9/30); over all 86 such test reports 37 vs 23
    assert carried >= 10 and carried > nn_carried, (carried, nn_carried)
    invented = [pos(d) for d in drafts[len(known) :]]
    assert sum(bool(x) for x in invented) <= 2, f"normal reports drafted with findings: {invented}"

    # its reads_normal model (carry_rates.json) on validate reports it was not fit on: AUC 0.951
    # recorded in radgpt.model.abnormal; 25% of these Findings read abnormal at 0.5
    from sklearn.metrics import roc_auc_score

    from radgpt.model.abnormal import states_pathology
    from radgpt.model.carry import CarryRates

    v = read_reports(cfg)
    v = v.filter(pc.and_(pc.equal(v["split"], "validate"), pc.equal(v["eligible"], True)))
    p = CarryRates.load(ADAPTER).abnormal(v["findings"].to_pylist())
    y = [states_pathology(i) for i in v["impression"].to_pylist()]
    assert len(p) > 200 and roc_auc_score(y, p) > 0.93
    assert 0.15 < sum(x >= 0.5 for x in p) / len(p) < 0.35
