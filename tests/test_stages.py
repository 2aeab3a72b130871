"""Drafting stages on the tiny random Llama: Prompter -> Drafter (the Ray actors) and
Drafter.generate (serve) are exactly the three stages composed; the engine's batches match plain
one-prompt generate; one draft row builder.

    .venv/bin/pytest tests/test_stages.py -q
"""

from __future__ import annotations

import datetime as dt
import json
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
            "model.adapter": None,  # the base model alone
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
    """Prompter's rows through the actor give the drafts table rows built stage by stage (same
    model); the prompt columns stay out of the drafts."""
    from radgpt.draft.drafter import PROMPT_COLUMNS, Prompter
    from radgpt.schema import arrow_schema

    spec, cfg, tok = drafter.spec, drafter.cfg, drafter.engine.tokenizer
    assert str(drafter.engine.model.dtype) == f"torch.{spec.dtype}"  # the run's resolved dtype
    pre = Preprocess(spec, tok, cfg.draft.max_new_tokens)
    post = Postprocess(spec, tok, RUN)
    rs = reports()
    ids, nb = pre(FINDINGS, [r["report_id"] for r in rs])
    outs = post.outputs(ids, drafter.engine(ids))
    want = post.rows(rs, outs)
    prompted = Prompter(cfg.to_json(), spec.to_json())(pa.Table.from_pylist(rs))
    # the preprocess stage's own tokenizer (no model) gives the engine's prompt ids
    assert prompted.column_names == list(rs[0]) + list(PROMPT_COLUMNS)
    assert {n: prompted.schema.field(n).type for n in PROMPT_COLUMNS} == PROMPT_COLUMNS
    assert prompted.column("prompt_ids").to_pylist() == ids
    assert prompted.column("branches").to_pylist() == pre.branches(FINDINGS)
    assert prompted.column("neighbours").to_pylist() == nb == [[]] * len(rs)  # no retrieval
    got = drafter(prompted)
    assert got.schema == arrow_schema("drafts")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]  # noqa: E731
    assert strip(got.to_pylist()) == strip(want)
    got = got.to_pylist()
    assert [o["draft"] for o in drafter.generate(FINDINGS)] == [r["draft"] for r in got]
    assert all(r["prompt_tokens"] == len(i) for r, i in zip(got, ids, strict=True))
    with pytest.raises(KeyError, match="prompt_ids"):  # the actor never builds prompts itself
        drafter(pa.Table.from_pylist(rs))


def test_engine_batches_equal_plain_generate(drafter):
    """Length-sorted, left-padded batches of 2 give what one unpadded prompt at a time gives;
    latency_ms is the per-report share of its batch (shared within a batch)."""
    import torch

    eng, d = drafter.engine, drafter.cfg.draft
    ids = drafter.preprocess(FINDINGS, [None] * len(FINDINGS))[0]
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


def test_drafts_stop_at_every_control_token(drafter):
    """An adapter may end on <|im_start|> or <|im_end|> (one GGUF's tokenizer differs across
    transformers versions); past either, decoding (which drops them) would run on into the
    template's next turn."""
    eng = drafter.engine
    control = {eng.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")}  # fmt: skip
    assert control <= set(eng.eos) and set(eng.tokenizer.all_special_ids) <= set(eng.eos)


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


def test_postprocess_cleans_keeps_the_raw_text_and_flags_with_observations(drafter):
    """Generations made of known text (tokenized here): cleaning is recorded, flags carry their
    observations, rows hold both."""
    from radgpt.draft.stages import Generation

    post, tok = drafter.postprocess, drafter.engine.tokenizer
    texts = ["No acute cardiopulmonary abnormality. .", "Small left pleural effusion."]
    gens = [
        Generation(tok(t, add_special_tokens=False)["input_ids"], True, False, 1.0) for t in texts
    ]
    outs = post.outputs([[1, 2], [3]], gens)
    assert tok.decode(gens[0].tokens).strip() == texts[0]
    assert outs[0]["draft"] == "No acute cardiopulmonary abnormality."
    assert outs[0]["draft_raw"] == texts[0] and outs[1]["draft_raw"] is None
    assert outs[0]["output_tokens"] == len(gens[0].tokens) + 1
    rows = post.rows(reports()[1:3], outs)  # Findings: cardiomegaly + effusion; a nodule
    assert "omits_finding" in rows[0]["flags"]
    assert {"omits_finding:Cardiomegaly", "omits_finding:Pleural Effusion"} <= set(
        rows[0]["flag_observations"]
    )
    # no train split here: no carry evidence, every stated finding counts as usually carried
    assert rows[1]["flag_observations"] == [
        "omits_finding:Lung Lesion",
        "adds_finding:Pleural Effusion",
    ]
    assert rows[1]["flags"] == ["laterality_mismatch", "omits_finding", "adds_finding"]
    assert rows[0]["draft_raw"] == texts[0]


def test_nbest_engine_and_rerank_in_the_drafter(tiny_model_dir, tmp_path):
    """draft.n_best=3: reports whose Findings state a usually-carried finding get 3 candidates,
    the others are plain greedy; with rerank_weight 0 the kept draft is (here) the greedy one."""
    sets = {"paths.root": str(tmp_path), "model.base": str(tiny_model_dir),
            "draft.max_new_tokens": 5, "draft.batch_size": 2, "train.cutoff_len": 128,
            "draft.n_best": 3, "draft.rerank_weight": 0.0}  # fmt: skip
    cfg = load_config(overrides=sets)
    d = Drafter(cfg.to_json(), ModelSpec.resolve(cfg, None).to_json(), RUN)
    # no carry evidence (no train split): every positive finding counts; #0 and #3 state none
    assert d.preprocess.branches(FINDINGS) == [1, 3, 3, 1, 3]
    assert d.preprocess.usual == d.postprocess.usual  # one set: n-best branches on what it rewards
    ids, nb = d.preprocess(FINDINGS, [None] * len(FINDINGS))
    assert nb == [[]] * len(FINDINGS)  # no retrieval: no neighbours' wording to prefer
    gens = d.engine(ids, d.preprocess.branches(FINDINGS))
    assert [len(g.candidates) for g in gens] == [0, 3, 3, 0, 3]
    greedy = d.engine(ids)
    assert [g.tokens for g in gens] == [g.tokens for g in greedy]  # candidate 0 = greedy
    # weight 0: the candidate with the best mean token log-prob (greedy elsewhere)
    want = []
    for g in gens:
        cs = g.candidates or ((g.tokens, 0.0, g.stopped),)
        best = max(range(len(cs)), key=lambda i: (cs[i][1] / (len(cs[i][0]) + cs[i][2]), -i))
        want.append(d.postprocess.clean(d.postprocess._text(cs[best][0])))
    assert [o["draft"] for o in d.generate(FINDINGS)] == want
    spec = ModelSpec.resolve(cfg, None)
    assert json.loads(spec.generation)["n_best"] == {
        "n": 3, "rerank_weight": 0.0, "usual": sorted(d.postprocess.usual)
    }  # fmt: skip
