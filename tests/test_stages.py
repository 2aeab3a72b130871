"""Drafting stages on the tiny random Llama: the Drafter (Ray actor, serve) is exactly its three
stages composed; the engine's batches match plain one-prompt generate; one draft row builder.

    .venv/bin/pytest tests/test_stages.py -q
"""

from __future__ import annotations

import datetime as dt
import typing

import pyarrow as pa
import pytest
from test_infer import FINDINGS  # tests/ is on sys.path

from radgpt.config import DraftCfg, load_config
from radgpt.draft.drafter import Drafter
from radgpt.draft.stages import ENGINES, HFEngine, Postprocess, Preprocess, draft_row
from radgpt.model.ids import text_sha256
from radgpt.model.spec import ModelSpec
from radgpt.writeback.provenance import provenance_fields

RUN = {"run_id": "draft-1", "run_date": "2024-05-01"}
VOLATILE = ("generated_at", "latency_ms")


@pytest.fixture(scope="module")
def drafter(tiny_model_dir, tmp_path_factory):
    cfg = load_config(
        overrides={
            "paths.root": str(tmp_path_factory.mktemp("root")),
            "model.base": str(tiny_model_dir),
            "draft.max_new_tokens": 6,
            "draft.batch_size": 2,
            "train.cutoff_len": 128,
        }
    )
    return Drafter(cfg.to_json(), ModelSpec.resolve(cfg, None).to_json(), RUN)


def reports() -> list[dict]:
    return [
        {"draft_id": f"d{i}", "report_id": f"csv:{i}", "source": "csv", "patient_id": f"p{i}",
         "study_id": None, "source_sha256": f"{i:064x}", "findings": f}
        for i, f in enumerate(FINDINGS)
    ]  # fmt: skip


def test_engines_are_the_configs_choices():
    assert set(ENGINES) == set(typing.get_args(DraftCfg.model_fields["engine"].annotation))
    assert ENGINES["transformers"] is HFEngine


def test_drafter_is_its_stages_composed(drafter):
    """The actor's drafts table rows equal the rows built stage by stage (same model)."""
    spec, cfg, tok = drafter.spec, drafter.cfg, drafter.engine.tokenizer
    pre = Preprocess(spec, tok, cfg.draft.max_new_tokens)
    post = Postprocess(spec, tok, RUN)
    rs = reports()
    ids = pre(FINDINGS, [r["report_id"] for r in rs])
    outs = post.outputs(ids, drafter.engine(ids))
    want = post.rows(rs, outs)
    got = drafter(pa.Table.from_pylist(rs)).to_pylist()
    strip = lambda rows: [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]  # noqa: E731
    assert strip(got) == strip(want)
    assert [o["draft"] for o in drafter.generate(FINDINGS)] == [r["draft"] for r in got]
    assert all(r["prompt_tokens"] == len(i) for r, i in zip(got, ids, strict=True))


def test_engine_batches_equal_plain_generate(drafter):
    """Length-sorted, left-padded batches of 2 give what one unpadded prompt at a time gives;
    latency_ms is the per-report share of its batch (shared within a batch)."""
    import torch

    eng, d = drafter.engine, drafter.cfg.draft
    ids = drafter.preprocess(FINDINGS, [None] * len(FINDINGS))
    gens = eng(ids)
    for p, g in zip(ids, gens, strict=True):
        with torch.inference_mode():
            y = eng.model.generate(
                input_ids=torch.tensor([p]),
                attention_mask=torch.ones(1, len(p), dtype=torch.long),
                max_new_tokens=d.max_new_tokens,
                do_sample=False,
                eos_token_id=eng.eos,
                pad_token_id=eng.pad,
            )[0, len(p) :].tolist()
        stop = next((j for j, v in enumerate(y) if v in eng.eos), None)
        assert g.tokens == (y if stop is None else y[:stop]) and g.stopped == (stop is not None)
        assert g.truncated == (stop is None and len(y) >= d.max_new_tokens)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches = [order[s : s + d.batch_size] for s in range(0, len(order), d.batch_size)]
    for b in batches:
        assert len({gens[i].latency_ms for i in b}) == 1 and gens[b[0]].latency_ms > 0


def test_one_row_builder_for_batch_and_serve(drafter):
    """Batch rows have exactly the drafts columns; serve's response is built from the same row."""
    from radgpt.draft.serve import request_report
    from radgpt.schema import arrow_schema

    spec, r = drafter.spec, reports()[1]
    out = drafter.generate([r["findings"]])[0]
    row = draft_row(spec, r, out, ["truncated"], RUN, "host", "now")
    assert list(row) == arrow_schema("drafts").names
    q = request_report(spec, r["findings"])
    assert q["report_id"] == f"findings:{text_sha256(r['findings'])}"
    assert q["draft_id"] == spec.draft_id(q["report_id"])
    srow = drafter.postprocess.rows([q], [out])[0]
    prov = provenance_fields(srow)
    assert prov["draft_id"] == q["draft_id"]
    assert prov["findings_sha256"] == text_sha256(r["findings"])
    assert prov["generation"] == spec.generation and isinstance(srow["generated_at"], dt.datetime)
    assert srow["flags"] == drafter.postprocess.flags(r["findings"], out)
