"""Drafting on a real local Ray (2 CPUs) with the tiny random Llama: selection, end to end,
idempotent re-run, provenance, an actor killed mid-run (DiesOnce), the preprocess stage as its own
Ray Data operator and process (PidPrompter, PidDrafter), adapters with retrieval.

    .venv/bin/pytest tests/test_infer.py -q
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radgpt import table
from radgpt.config import ConfigError, load_config
from radgpt.draft.drafter import Drafter, Prompter
from radgpt.draft.flags import FLAGS
from radgpt.model import base as model
from radgpt.model.ids import canonical, draft_id, text_sha256
from radgpt.model.spec import ModelSpec
from radgpt.schema import arrow_schema

FINDINGS = [
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "Mild cardiomegaly. Small left pleural effusion.",
    "There is a 1 cm nodule in the right upper lobe. Degenerative changes of the thoracic spine.",
    "Stable postoperative changes.",
    "Right lower lobe consolidation. The heart size is normal.",
]


def write_reports(
    root, n: int, run_id: str = "ingest-1", start: int = 0, splits=("train", "test")
) -> None:
    """A committed reports table: every 3rd without Impression, every 7th without Findings;
    split splits[i % len(splits)]."""
    now = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    rows = []
    for i in range(start, start + n):
        f = None if i % 7 == 6 else FINDINGS[i % len(FINDINGS)] + f" Case {i}."
        imp = None if i % 3 == 2 else "No acute cardiopulmonary abnormality."
        rows.append(
            {
                "report_id": f"csv:{i}",
                "source": "csv",
                "source_uri": "/in/reports.csv",
                "source_member": str(i),
                "source_sha256": f"{i:064x}",
                "native_id": str(i),
                "patient_id": f"p{i}",
                "study_id": None,
                "exam_time": None,
                "exam": "XR CHEST",
                "status": "final",
                "sections": None,
                "findings": f,
                "impression": imp,
                "findings_words": len((f or "").split()),
                "impression_words": len((imp or "").split()),
                "pair_sha256": f"{i:064x}",
                "eligible": bool(f and imp),
                "exclusion_reason": None if f and imp else "no_impression",
                "split": splits[i % len(splits)],
                "split_origin": "random",
                "ingest_run_id": run_id,
                "ingested_at": now,
            }
        )
    t = pa.Table.from_pylist(rows, schema=arrow_schema("reports"))
    st = table.staging_dir(root, run_id)
    for split in ("train", "test"):
        part = t.filter(pa.compute.equal(t.column("split"), split)).drop_columns(
            ["source", "split"]
        )
        (st / "source=csv" / f"split={split}").mkdir(parents=True, exist_ok=True)
        pq.write_table(part, st / "source=csv" / f"split={split}" / "part.parquet")
    table.commit(root, run_id, {"rows": n})


@pytest.fixture
def cfg(tmp_path, tiny_model_dir):
    return load_config(
        overrides={
            "paths.root": str(tmp_path),
            "model.base": str(tiny_model_dir),
            "model.adapter": None,  # the base model alone
            "draft.max_new_tokens": 6,
            "draft.batch_size": 4,
            "draft.num_actors": 1,
            "draft.cpus_per_actor": 1,
            "draft.executor": "ray",  # the tests below are about the Ray path; local: test_local
            "train.cutoff_len": 128,
        }
    )


def test_select_modes(cfg):
    from radgpt.draft.run import select

    write_reports(cfg.path("table"), 14)
    reports = table.read_reports(cfg)
    spec = ModelSpec.resolve(cfg, None)
    ids = lambda t: sorted(int(r.split(":")[1]) for r in t.column("report_id").to_pylist())  # noqa: E731
    new = select(reports, cfg, spec)
    assert ids(new) == [
        i for i in range(14) if i % 7 != 6
    ]  # eligible or missing: all with findings
    cfg.draft.selection = "missing"
    assert ids(select(reports, cfg, spec)) == [2, 5, 8, 11]
    cfg.draft.selection = "split"
    with pytest.raises(ConfigError, match="draft.split"):
        select(reports, cfg, spec)
    cfg.draft.split = "test"
    assert ids(select(reports, cfg, spec)) == [1, 3, 5, 7, 9, 11]
    cfg.draft.selection, cfg.draft.limit = "new", 3
    lim = select(reports, cfg, spec, done={new.column("draft_id")[0].as_py()})
    assert len(lim) == 3 and new.column("report_id")[0].as_py() not in lim["report_id"].to_pylist()
    lens = [len(f) for f in new.column("findings").to_pylist()]
    assert lens == sorted(lens)  # length-sorted for batching


def test_generate_batched_equals_one_by_one(cfg):
    from radgpt.draft.drafter import generate

    batched = generate(cfg, FINDINGS, adapter=None)
    assert len(batched) == len(FINDINGS) and all(isinstance(x, str) for x in batched)
    cfg.draft.batch_size = 1
    assert generate(cfg, FINDINGS, adapter=None) == batched


@pytest.mark.slow
def test_draft_end_to_end_idempotent(cfg, ray_local):
    from radgpt.draft.run import run_draft
    from radgpt.writeback.drafts import read_drafts
    from radgpt.writeback.fhir import run_writeback

    write_reports(cfg.path("table"), 10)
    s = run_draft(cfg)
    want = {f"csv:{i}" for i in range(10) if i % 7 != 6}
    assert s["selected"] == s["drafted"] == s["committed"] == len(want)
    t = read_drafts(cfg.path("drafts"))
    rows = t.to_pylist()
    assert sorted(r["report_id"] for r in rows) == sorted(want)
    sha = model.base_sha256(cfg.model_path(cfg.model.base))
    gen = json.loads(rows[0]["generation"])
    # the settings that change a draft: decoding, the recorded cleaning, the review flags' rates
    assert {k: gen[k] for k in ("do_sample", "engine", "max_new_tokens")} == {
        "do_sample": False, "engine": "transformers", "max_new_tokens": 6
    }  # fmt: skip
    assert gen["postprocess"] == cfg.draft.clean and gen["review"]["carry_threshold"] == 0.4
    for r in rows:  # provenance complete and recomputable
        assert r["base_model_sha256"] == sha and r["run_id"] == s["run_id"]
        named = {k: v for k, v in json.loads(r["generation"]).items() if k != "review"}
        assert r["draft_id"] == draft_id(  # the review settings annotate, they do not name
            r["report_id"], f"base:{sha}", "chat-v1", "1", canonical(named)
        )
        i = int(r["report_id"].split(":")[1])
        assert r["findings_sha256"] == text_sha256(FINDINGS[i % 5] + f" Case {i}.")
        assert r["source_sha256"] == f"{i:064x}" and r["patient_id"] == f"p{i}"
        assert 0 < r["output_tokens"] <= 6 and r["prompt_tokens"] > 10 and r["latency_ms"] > 0
        assert set(r["flags"]) <= set(FLAGS) and r["worker_host"] and r["code_version"]
        assert r["run_date"] == s["run_date"] and r["adapter_id"] is None
    # same night again: nothing selected, nothing written; new reports: only those
    again = run_draft(cfg)
    assert (again["selected"], again["committed"]) == (0, 0)
    # new test-split reports: the train split, hence the carry rates and the observations the
    # n-best reranker rewards, is unchanged (when one crosses the threshold: test_spec)
    write_reports(cfg.path("table"), 3, "ingest-2", start=10, splits=("test",))
    third = run_draft(cfg)
    assert third["committed"] == 3 and len(read_drafts(cfg.path("drafts"))) == len(want) + 3
    # "all" re-drafts everything but commits nothing new
    cfg.draft.selection = "all"
    assert run_draft(cfg)["committed"] == 0
    exported = run_writeback(cfg)
    assert sorted(x["resources"] for x in exported) == [6, 2 * len(want)]


class DiesOnce(Drafter):
    """A Drafter whose first batch kills its actor's process, once across restarts (the marker
    file says it happened): Ray must restart the actor and re-draft that batch."""

    marker = ""  # set by the test

    def __call__(self, batch):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(batch)


@pytest.mark.slow
def test_actor_killed_mid_run_drafts_each_report_once(
    cfg, ray_local, tmp_path, monkeypatch, caplog
):
    from ray import cloudpickle

    from radgpt.draft.run import run_draft
    from radgpt.writeback.drafts import read_drafts

    marker = tmp_path / "killed-once"
    monkeypatch.setattr(DiesOnce, "marker", str(marker))
    write_reports(cfg.path("table"), 12)
    here = sys.modules[__name__]  # Ray's workers cannot import this test module: ship the class
    cloudpickle.register_pickle_by_value(here)
    try:
        with caplog.at_level("WARNING", logger="radgpt.draft.run"):
            s = run_draft(cfg, actor=DiesOnce)
    finally:
        cloudpickle.unregister_pickle_by_value(here)
    assert marker.is_file()  # an actor really died on its first batch
    assert "a drafting actor died" in caplog.text  # and a fresh pool drafted what was left
    ids = read_drafts(cfg.path("drafts")).column("report_id").to_pylist()
    assert len(ids) == len(set(ids)) == s["selected"] == s["committed"] == 11


class PidPrompter(Prompter):
    """A Prompter that writes its process id into each row (pre_pid)."""

    def __call__(self, batch):
        out = super().__call__(batch)
        return out.append_column("pre_pid", pa.array([os.getpid()] * len(out), pa.int64()))


class PidDrafter(Drafter):
    """A Drafter that keeps, next to each drafts row, the Prompter's process id and its own."""

    def __call__(self, batch):
        out = super().__call__(batch)  # rows in input order
        pids = pa.array([os.getpid()] * len(out), pa.int64())
        return out.append_column("pre_pid", batch.column("pre_pid")).append_column("pid", pids)


@pytest.mark.slow
def test_preprocess_is_its_own_ray_data_operator_and_process(cfg, ray_local, tmp_path, monkeypatch):
    """The plan: selection -> Prompter pool -> Drafter pool, two operators (not fused), the
    prompts built in another process than the model's; the drafts rows come out whole."""
    from ray import cloudpickle

    from radgpt.draft import run as draft_run

    write_reports(cfg.path("table"), 12)
    spec = ModelSpec.resolve(cfg, None)
    sel = draft_run.select(table.read_reports(cfg), cfg, spec)
    pq.write_table(sel, path := tmp_path / "selection.parquet", row_group_size=4)
    monkeypatch.setattr(draft_run, "Prompter", PidPrompter)
    here = sys.modules[__name__]  # Ray's workers cannot import this test module: ship the classes
    cloudpickle.register_pickle_by_value(here)
    try:
        with warnings.catch_warnings():  # as _draft_ray: max_restarts has no named parameter yet
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = draft_run._map(ray_local.data.read_parquet(str(path)), ray_local, cfg, spec,
                                {"run_id": "draft-x", "run_date": "2024-05-01"}, PidDrafter)  # fmt: skip
        got = pa.concat_tables(ds.iter_batches(batch_format="pyarrow", batch_size=None))
        stats = ds.stats()
    finally:
        cloudpickle.unregister_pickle_by_value(here)
    ops = re.findall(r"^Operator \d+ (.+?):", stats, re.M)
    maps = [op for op in ops if "MapBatches" in op]
    assert maps == ["MapBatches(PidPrompter)", "MapBatches(PidDrafter)"], ops
    assert got.column_names == arrow_schema("drafts").names + ["pre_pid", "pid"]
    assert sorted(got.column("draft_id").to_pylist()) == sorted(sel.column("draft_id").to_pylist())
    pre, eng = set(got.column("pre_pid").to_pylist()), set(got.column("pid").to_pylist())
    assert len(pre) == len(eng) == 1 and pre != eng and os.getpid() not in pre | eng


def test_cpu_guard_and_engines(cfg, ray_local):
    from radgpt.draft.run import run_draft

    write_reports(cfg.path("table"), 4)
    cfg.draft.num_actors = 2  # 2 x 1 CPU = every CPU: read tasks would starve
    with pytest.raises(ConfigError, match="starve"):
        run_draft(cfg)
    # the preprocess pool counts too: half a CPU left, and a read task takes a whole one
    total = ray_local.cluster_resources()["CPU"]
    cfg.draft.num_actors, cfg.draft.preprocess_cpus = int(total) - 1, 0.5
    with pytest.raises(ConfigError, match=r"preprocess_cpus = .* leaves 0.5: .* starve"):
        run_draft(cfg)
    with pytest.raises(ConfigError, match="draft.engine"):  # no stub engines on offer
        load_config(overrides={"draft.engine": "vllm"})


def test_adapter_with_retrieval(cfg, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from radgpt.model.retrieval import Retriever

    base = cfg.model_path(cfg.model.base)
    ad = tmp_path / "adapter"
    m = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]),
    )
    m.save_pretrained(ad)
    Retriever.fit(["csv:100"], ["Small left pleural effusion."], ["Left effusion."]).save(
        ad / "retrieval"
    )
    rec = {
        "adapter_id": "lora-test-1",
        "template": "chat-v1",
        "retrieval_k": 1,
        "task": "impression",
    }
    (ad / "adapter_record.json").write_text(json.dumps(rec))
    spec = ModelSpec.resolve(cfg, ad)
    assert spec.adapter_id == "lora-test-1" and spec.model_key == "lora-test-1"
    d = Drafter(cfg.to_json(), spec)
    tok = d.engine.tokenizer
    ids, nb = d.preprocess([FINDINGS[1]], ["csv:1"])
    with_ex = tok.decode(ids[0])
    assert "Example 1" in with_ex and "Left effusion." in with_ex
    assert nb == [["Left effusion."]]  # the reranker compares with the same neighbour
    ids, nb = d.preprocess([FINDINGS[1]], ["csv:100"])
    assert "Example 1" not in tok.decode(ids[0]) and nb == [[]]  # never its own impression
    # with neighbours to compare with, every report branches (the default: 4, 10 neighbours)
    assert d.preprocess.branches(FINDINGS[:2]) == [4, 4]
    assert json.loads(spec.generation)["n_best"]["neighbours"] == {"k": 10, "weight": 1.0}
    # the reranker reads them: of two candidates without findings, the neighbour's wording wins
    from radgpt.draft.stages import Generation

    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    cands = ((enc("No acute cardiopulmonary abnormality."), -1.0, True),
             (enc("No active disease."), -3.0, True))  # fmt: skip
    g = [Generation(cands[0][0], True, False, 1.0, cands)]
    pick = lambda nb: d.postprocess.outputs([[1]], g, ["Lungs clear."], nb)[0]["draft"]  # noqa: E731
    assert pick(None) == "No acute cardiopulmonary abnormality."  # the more probable
    assert pick([["No active disease."]]) == "No active disease."
    out = d.generate(FINDINGS[:2], ["csv:1", "csv:2"])
    assert [o["output_tokens"] for o in out] and all(o["output_tokens"] <= 6 for o in out)


def test_adapter_without_corpus_retrieves_from_the_table(cfg, tmp_path, caplog):
    """An adapter shipped without report text (retriever.json only, as models/iu-default) takes
    its examples from the train split of the local table; the corpus digest is in the drafts' ids."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from radgpt.model.retrieval import Retriever

    ad = tmp_path / "adapter"
    m = get_peft_model(
        AutoModelForCausalLM.from_pretrained(cfg.model_path(cfg.model.base)),
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]),
    )
    m.save_pretrained(ad)
    Retriever.fit(["x:1"], ["Old corpus."], ["Old impression."]).save(ad / "retrieval")
    (ad / "retrieval" / "corpus.json").unlink()  # ship the settings, not the text
    rec = {"adapter_id": "lora-test-2", "template": "chat-v1", "retrieval_k": 1, "eos_token_id": 5,
           "base_tokenizer_sha256": "0" * 64}  # fmt: skip
    (ad / "adapter_record.json").write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="no eligible train reports"):  # no table yet
        ModelSpec.resolve(cfg, ad)
    write_reports(cfg.path("table"), 10)  # train: even ids with Findings and Impression
    with caplog.at_level("WARNING", logger="radgpt.model.spec"):
        spec = ModelSpec.resolve(cfg, ad)
    assert "another tokenizer" in caplog.text  # the record's tokenizer hash is not the base's
    want = Retriever.from_table(cfg.path("table"))
    assert want.ids == ["csv:0", "csv:4"]  # eligible train rows (0..9: even, with both sections)
    gen = json.loads(spec.generation)
    assert gen["retrieval"] == {"k": 1, "corpus_sha256": want.digest}
    assert spec.retrieval_digest == want.digest
    assert "_index" not in want.__dict__  # the digest needs no TF-IDF fit (fitted on first query)
    d = Drafter(cfg.to_json(), spec)
    eos = d.engine.eos
    assert 5 in eos and d.engine.tokenizer.eos_token_id in eos  # stops where training ended
    p = d.engine.tokenizer.decode(d.preprocess([FINDINGS[0]], ["csv:1"])[0][0])
    assert "Example 1" in p and "Case 0." in p and "Old impression." not in p
    # another table => another corpus => other draft ids (model_key is the same adapter)
    write_reports(cfg.path("table"), 4, run_id="ingest-2", start=20)
    assert (
        json.loads(ModelSpec.resolve(cfg, ad).generation)["retrieval"]["corpus_sha256"]
        != want.digest
    )


@pytest.mark.slow
def test_two_actors_draft_exactly_what_one_actor_drafts(cfg, ray_local, tmp_path):
    """Sharding: the same selection over 2 actors (batches land on either) gives the same rows
    as 1 actor: draft ids, texts, flags, tokens (greedy; batch members never influence each other)."""
    from radgpt.draft.run import run_draft
    from radgpt.writeback.drafts import read_drafts

    write_reports(cfg.path("table"), 20)
    cols = ["draft_id", "report_id", "draft", "flags", "flag_observations", "draft_raw",
            "prompt_tokens", "output_tokens", "generation"]  # fmt: skip
    got = {}
    for n in (1, 2):
        cfg.draft.num_actors, cfg.draft.cpus_per_actor = n, 0.5
        cfg.paths.drafts = str(tmp_path / f"drafts-{n}")
        s = run_draft(cfg)
        assert s["committed"] == s["selected"] == 18  # 20 - 2 without Findings
        got[n] = read_drafts(cfg.path("drafts"), cols).sort_by("draft_id").to_pylist()
    assert got[1] == got[2]
