"""LoRA training on Ray Train with the tiny random Llama: masking, batching, loss, DDP, resume.

.venv/bin/pytest tests/test_train.py -q
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

FINDINGS = [
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "Mild cardiomegaly. Small left pleural effusion. Right lower lobe consolidation.",
    "There is a 1 cm nodule in the right upper lobe. Degenerative changes of the thoracic spine.",
    "Stable postoperative changes. The lungs are clear. No pneumothorax.",
]
IMPRESSIONS = [
    "No acute cardiopulmonary abnormality.",
    "Right lower lobe consolidation.",
    "Right upper lobe nodule.",
    "No acute disease.",
]


def make_table(root: Path, n_train: int = 8, n_val: int = 4, n_bad: int = 2) -> Path:
    """A small committed reports table (radgpt.table layout), hive-partitioned by source/split."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    from radgpt import table
    from radgpt.schema import arrow_schema

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = []
    plan = [("train", True)] * n_train + [("validate", True)] * n_val + [("train", False)] * n_bad
    for i, (split, ok) in enumerate(plan):
        f, imp = FINDINGS[i % 4], IMPRESSIONS[i % 4]
        rows.append(
            dict(
                report_id=f"csv:{i:03d}",
                source="csv",
                source_uri="mem",
                source_member=str(i),
                source_sha256="0" * 64,
                native_id=str(i),
                patient_id=None,
                study_id=None,
                exam_time=None,
                exam=None,
                status=None,
                sections=None,
                findings=f if ok else None,
                impression=imp,
                findings_words=len(f.split()),
                impression_words=len(imp.split()),
                pair_sha256=hashlib.sha256(f"{i}{f}{imp}".encode()).hexdigest(),
                eligible=ok,
                exclusion_reason=None if ok else "no_findings",
                split=split,
                split_origin="random",
                ingest_run_id="ingest-test",
                ingested_at=now,
            )
        )
    t = pa.Table.from_pylist(rows, schema=arrow_schema("reports"))
    st = table.staging_dir(root, "ingest-test")
    part = pads.partitioning(
        pa.schema([("source", pa.string()), ("split", pa.string())]), flavor="hive"
    )
    pads.write_dataset(t, st, format="parquet", partitioning=part)
    table.commit(root, "ingest-test", {"counts": {"rows": len(rows)}})
    return root


def _cfg(tmp_path, **kw):
    from radgpt.config import load_config

    base = {
        "paths.root": str(tmp_path / "var"),
        "train.effective_batch": 4,
        "train.micro_batch": 2,
        "train.cutoff_len": 128,
        "train.checkpoint_every": 2,
        "train.lr_schedule": "constant",
        "train.warmup_ratio": 0.0,
        "train.cpus_per_worker": 1,
    }
    return load_config(None, {**base, **kw}, env={})


def _job(table, base, max_steps=None) -> dict:
    """The overrides that say what to train: the table, the base model, the step cap."""
    return {"paths.table": str(table), "model.base": str(base), "train.max_steps": max_steps}


# ---- pure pieces ------------------------------------------------------------------------------


def test_batches_cover_each_example_once_deterministically():
    from radgpt.train.data import batches

    lengths = [5, 50, 7, 48, 6, 52, 9, 47, 8, 51, 3]
    b0 = batches(lengths, 2, seed=1, epoch=0)
    flat = sorted(i for b in b0 for i in b)
    assert flat == list(range(len(lengths)))
    assert b0 == batches(lengths, 2, seed=1, epoch=0) and b0 != batches(lengths, 2, seed=1, epoch=1)

    def pad(bs):  # padded token slots: sum over batches of B * max_len - real tokens
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in bs)

    naive = batches(lengths, 2, seed=1, epoch=0, group_by_length=False)
    assert pad(b0) < pad(naive)


def test_collate_pads_right_with_ignored_labels():
    from radgpt.train.data import collate

    b = collate(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}], 0
    )
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_response_loss_is_the_models_loss_and_gradient(tiny_model_dir, tmp_path):
    """Logits only where a response token is the target: the same mean cross-entropy and the
    same LoRA gradients as the model's own full-logits loss; the sum matches the token count."""
    import torch
    from transformers import AutoModelForCausalLM

    from radgpt.train.data import collate
    from radgpt.train.loop import build_model, response_loss

    torch.manual_seed(0)
    m, _ = build_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), _cfg(tmp_path))
    m.train()
    for p in m.parameters():  # LoRA B starts at 0: nudge it so the adapter is in the gradient
        if p.requires_grad:
            p.data.normal_(0, 0.02)
    ex = [  # prompt tokens (-100) then a response, right-padded to different lengths
        {"input_ids": list(range(5, 17)), "labels": [-100] * 9 + [14, 15, 16]},
        {"input_ids": list(range(30, 37)), "labels": [-100] * 4 + [34, 35, 36]},
        {"input_ids": list(range(50, 60)), "labels": [-100] * 8 + [58, 59]},
    ]
    b = collate(ex, 0)
    grads = []
    for f in (lambda: m(**b).loss, lambda: response_loss(m, b)):
        m.zero_grad()
        torch.manual_seed(1)  # the same dropout masks for both
        loss = f()
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in m.parameters() if p.requires_grad]))
    (full, g_full), (resp, g_resp) = grads
    assert resp == pytest.approx(full, rel=1e-5)
    assert all(torch.allclose(a, c, atol=1e-6) for a, c in zip(g_full, g_resp, strict=True))
    m.eval()
    with torch.no_grad():
        total = response_loss(m, b, reduction="sum").item()
        assert total / 8 == pytest.approx(m(**b).loss.item(), rel=1e-5)  # 3 + 3 + 2 targets


def test_frozen_bf16_weights_give_autocasts_loss_and_gradients(tiny_model_dir, tmp_path):
    """train.dtype bfloat16: LoRA's frozen Linear weights stored in bf16 give the same loss and
    LoRA gradients as bf16 autocast over fp32 weights (it multiplies bf16(weight) anyway);
    trainable weights, embeddings and norms stay fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    from radgpt.train.data import collate
    from radgpt.train.loop import build_model, frozen_to_bf16, response_loss

    torch.manual_seed(0)
    m, _ = build_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), _cfg(tmp_path))
    for p in m.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.02)
    b = collate([{"input_ids": list(range(5, 17)), "labels": [-100] * 9 + [14, 15, 16]},
                 {"input_ids": list(range(30, 37)), "labels": [-100] * 4 + [34, 35, 36]}], 0)  # fmt: skip
    got = []
    for cast in (False, True):
        if cast:
            assert frozen_to_bf16(m) > 0
        m.zero_grad()
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = response_loss(m, b)
        loss.backward()
        got.append((loss.item(), [p.grad.clone() for p in m.parameters() if p.requires_grad]))
    (a, ga), (c, gc) = got
    assert c == pytest.approx(a, rel=1e-6)
    assert all(torch.allclose(x, y, rtol=1e-3, atol=1e-6) for x, y in zip(ga, gc, strict=True))
    dtypes = {n: p.dtype for n, p in m.named_parameters()}
    assert all(dtypes[n] == torch.float32 for n, p in m.named_parameters() if p.requires_grad)
    assert any(d == torch.bfloat16 for d in dtypes.values())
    assert all(dtypes[n] == torch.float32 for n in dtypes if "norm" in n or "embed" in n)


def test_activation_checkpointing_keeps_less_for_backward_and_the_same_gradients(
    tiny_model_dir, tmp_path
):
    """train.activation_checkpointing: the tensors saved for backward shrink (each decoder layer's
    input instead of all its activations) and the loss and LoRA gradients are the plain run's,
    dropout included (fp32, lora_dropout 0.05, train mode)."""
    import torch
    from transformers import AutoModelForCausalLM

    from radgpt.train.data import collate
    from radgpt.train.loop import build_model, checkpoint_activations, response_loss

    torch.manual_seed(0)
    cfg = _cfg(tmp_path, **{"lora.target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"]})
    m, _ = build_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    for p in m.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.02)
    b = collate([{"input_ids": list(range(5, 69)), "labels": [-100] * 60 + [65, 66, 67, 68]},
                 {"input_ids": list(range(30, 77)), "labels": [-100] * 44 + [74, 75, 76]}], 0)  # fmt: skip
    m.train()
    got = []
    for ckpt in (False, True):
        if ckpt:
            checkpoint_activations(m)
        saved = []

        def keep(t, saved=saved):
            saved.append(t.numel() * t.element_size())
            return t

        m.zero_grad()
        torch.manual_seed(1)  # the same dropout masks in both runs
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            loss = response_loss(m, b)
        loss.backward()
        got.append((loss.item(), [p.grad.clone() for p in m.parameters() if p.requires_grad],
                    sum(saved)))  # fmt: skip
    (a, ga, plain), (c, gc, kept) = got
    assert c == pytest.approx(a, rel=1e-6)
    assert all(torch.allclose(x, y, rtol=1e-5, atol=1e-7) for x, y in zip(ga, gc, strict=True))
    assert kept < plain / 3, (kept, plain)  # 2.1 MB -> 0.3 MB here


def test_wrapping_for_lora_adds_no_library_warning_to_the_log(tiny_model_dir, tmp_path):
    """peft's get_peft_model reads a property transformers 5 deprecates: a FutureWarning about
    peft's code that every training worker printed (radgpt.model.base.peft_quiet)."""
    import warnings

    from transformers import AutoModelForCausalLM

    from radgpt.train.loop import build_model

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        build_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), _cfg(tmp_path))
    assert not [w for w in seen if "is_gradient_checkpointing" in str(w.message)]


def test_lr_schedule_warmup_then_cosine():
    from radgpt.train.loop import lr_lambda

    f = lr_lambda("cosine", warmup=2, total=10)
    assert f(0) < f(1) < f(2) == 1.0 and f(6) == pytest.approx(0.5) and f(10) == pytest.approx(0)
    assert lr_lambda("linear", 0, 4)(2) == pytest.approx(0.5)


def test_trainable_count_matches_config(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from radgpt.train.loop import build_model, expected_trainable

    cfg = _cfg(tmp_path)
    m = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # tiny Llama: hidden 64, 4 heads of 16, 2 kv heads -> q: 64->64, v: 64->32; 2 layers; r=8
    assert expected_trainable(m, cfg) == 2 * (8 * (64 + 64) + 8 * (64 + 32))
    _, n = build_model(m, cfg)
    assert n == 2 * (8 * 128 + 8 * 96)
    bad = _cfg(tmp_path, **{"lora.target_modules": ["nope_proj"]})
    with pytest.raises(ValueError, match="match no Linear"):
        expected_trainable(AutoModelForCausalLM.from_pretrained(tiny_model_dir), bad)
    full = _cfg(tmp_path, **{"train.method": "full"})
    m2 = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert build_model(m2, full)[1] == sum(p.numel() for p in m2.parameters())


def test_read_split_keeps_eligible_rows_of_one_split(ray_local, tmp_path):
    from radgpt.train.data import read_split, records

    root = make_table(tmp_path / "table", n_train=5, n_val=3, n_bad=2)
    tr = read_split(root, "train").take_all()
    va = read_split(root, "validate").take_all()
    assert len(tr) == 5 and len(va) == 3
    assert all(r["eligible"] and r["split"] == "train" for r in tr)
    recs = records(tr)
    assert [r["report_id"] for r in recs] == sorted(r["report_id"] for r in tr)
    assert set(recs[0]) == {"task", "instruction", "input", "output", "report_id"}
    with pytest.raises(FileNotFoundError, match="radgpt ingest"):
        read_split(tmp_path / "empty", "train")


# ---- Ray Train runs (tiny model, local Ray) ---------------------------------------------------


@pytest.fixture(scope="module")
def learnable_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny Llama with its tied embedding x5 (std 0.02 -> 0.1).

    At std 0.02 behind the final RMSNorm its logits stay within ~1 of each other whatever the
    LoRA layers do (loss pinned near ln(vocab)); real models have well-scaled output embeddings.
    """
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    d = tmp_path_factory.mktemp("learnable")
    shutil.copytree(tiny_model_dir, d, dirs_exist_ok=True)
    m = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        m.get_input_embeddings().weight.mul_(5.0)
    m.save_pretrained(d, safe_serialization=True)
    return d


@pytest.mark.slow
def test_training_lowers_loss_and_adapter_loads(ray_local, learnable_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from radgpt.model.base import load, read_adapter_record, tokenizer_sha256
    from radgpt.train.adapter import adapter_id
    from radgpt.train.run import run_train

    root = make_table(tmp_path / "table", n_train=8, n_val=4)
    allmods = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    kw = {"train.lr": 1e-2, "lora.target_modules": allmods, "train.checkpoint_every": 10}
    kw.update({"train.micro_batch": 4, "train.effective_batch": 8})  # whole set each step
    rec = run_train(_cfg(tmp_path, **kw, **_job(root, learnable_model_dir, 30)))
    out = Path(rec["adapter_dir"])
    m = rec["metrics"]
    losses = [json.loads(x)["loss"] for x in Path(m["metrics_file"]).read_text().splitlines()]
    assert len(losses) == m["steps"] == 30
    assert max(losses[-3:]) < 0.5 * losses[0]
    assert m["val_loss"] and m["val_loss"][-1]["val_loss"] < m["first_loss"]
    assert read_adapter_record(out) == {
        k: v for k, v in rec.items() if k not in ("adapter_dir", "registry")
    }
    assert rec["registry"]["version"] == "1"  # logged to the model registry (radgpt.model.registry)
    from radgpt.model.carry import CarryRates

    assert CarryRates.load(out).source["reports"] == 8  # carry rates of the training split
    assert rec["adapter_id"] == adapter_id(out) and rec["dataset"]["rows"] == {
        "train": 8,
        "validate": 4,
    }
    assert (rec["template"], rec["template_version"]) == ("chat-v1", 1) and rec["config"]["train"][
        "max_steps"
    ] == 30
    lines = (Path(rec["run"]["metrics"])).read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 31))
    # train.dtype auto, as resolved on the (CPU) worker: bf16 where the CPU has it natively
    from radgpt.model.base import resolve_dtype

    assert rec["train_state"]["dtype"] == resolve_dtype("auto", "cpu")
    # a standard PEFT dir: PeftModel loads it, and the merged model generates
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(learnable_model_dir), out)
    assert (
        sum(p.numel() for n, p in peft.named_parameters() if "lora_" in n)
        == rec["train_state"]["trainable_params"]
    )
    model, tok = load(learnable_model_dir, out, dtype="float32")  # as the fp32 base below
    assert (rec["eos_token"], rec["eos_token_id"]) == (tok.eos_token, tok.eos_token_id)
    assert rec["base_tokenizer_sha256"] == tokenizer_sha256(learnable_model_dir)
    x = tok(
        "<|im_start|>user\nFindings: The lungs are clear.<|im_end|>\n<|im_start|>assistant\n",
        return_tensors="pt",
    )
    y = model.generate(**x, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert y.shape[1] > x["input_ids"].shape[1]
    base_logits = AutoModelForCausalLM.from_pretrained(learnable_model_dir)(**x).logits
    assert not torch.allclose(model(**x).logits, base_logits)  # the adapter changed the model


def test_compiled_or_checkpointed_training_gives_the_eager_losses(
    ray_local, tiny_model_dir, tmp_path
):
    """train.compile, train.activation_checkpointing: the same steps under torch.compile, or with
    activations recomputed in backward (fp32, same seed and batches), give the plain run's losses
    and validation loss, and the record says how it ran."""
    from radgpt.train.run import run_train

    root = make_table(tmp_path / "table", n_train=8, n_val=2)
    got = {}
    for c, ac in ((False, False), (True, False), (False, True)):
        kw = {"train.compile": c, "train.activation_checkpointing": ac, "train.dtype": "float32",
              "train.checkpoint_every": 10}  # fmt: skip
        rec = run_train(_cfg(tmp_path / f"{c}-{ac}", **kw, **_job(root, tiny_model_dir, 3)))
        lines = Path(rec["metrics"]["metrics_file"]).read_text().splitlines()
        got[c, ac] = (
            [json.loads(x)["loss"] for x in lines],
            rec["metrics"]["val_loss"][-1]["val_loss"],
        )
        state = rec["train_state"]
        assert (state["compiled"], state["activation_checkpointing"]) == (c, ac)
    for other in ((True, False), (False, True)):  # fp32; fused kernels round apart
        assert got[other][0] == pytest.approx(got[False, False][0], rel=1e-4), other
        assert got[other][1] == pytest.approx(got[False, False][1], rel=1e-4), other


def test_missing_base_model_is_a_clear_error(tmp_path):
    from radgpt.train.run import run_train

    with pytest.raises(FileNotFoundError, match="model directory not found"):
        run_train(_cfg(tmp_path, **_job(tmp_path, tmp_path / "no-model")))


@pytest.mark.slow
def test_two_cpu_workers_with_retrieval_make_one_adapter(ray_local, tiny_model_dir, tmp_path):
    from radgpt.model.retrieval import Retriever
    from radgpt.train.run import run_train

    root = make_table(tmp_path / "table", n_train=8, n_val=2)
    kw = {"train.num_workers": 2, "train.retrieval_k": 1}
    rec = run_train(_cfg(tmp_path, **kw, **_job(root, tiny_model_dir, 4)))
    out = Path(rec["adapter_dir"])
    assert rec["hardware"]["num_workers"] == 2 and rec["train_state"]["examples"] == 8
    # 8 examples / micro_batch 2 = 4 batches; grad_accum = 4 / (2 x 2 workers) = 1 -> 2 steps/epoch
    assert rec["train_state"]["steps_per_epoch"] == 2 and rec["train_state"]["step"] == 4
    assert (out / "adapter_model.safetensors").is_file() and rec["retrieval_k"] == 1
    assert len(Retriever.load(out / "retrieval")) == 8


def crash_at_checkpoint(step: int):
    """train_loop, but the worker dies as it reports (checkpoints) optimizer step `step`.

    The loop runs in a Ray Train worker process, out of reach of the driver's monkeypatch: the
    wrapper patches ray.train.report there. A nested function, cloudpickle ships it by value.
    """

    def loop(config: dict) -> None:
        import ray.train

        from radgpt.train.loop import train_loop

        report = ray.train.report

        def crash(metrics: dict, *args, **kwargs):
            if metrics["step"] == step:
                raise RuntimeError(f"injected failure at the checkpoint of step {step}")
            return report(metrics, *args, **kwargs)

        ray.train.report = crash
        try:
            train_loop(config)
        finally:
            ray.train.report = report

    return loop


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(ray_local, tiny_model_dir, tmp_path):
    """Crash at step 4 (last checkpoint: step 2), resume: same steps, same weights as a clean run."""
    from safetensors.torch import load_file

    from radgpt.train.loop import STATE
    from radgpt.train.run import latest_checkpoint, latest_run, run_train

    root = make_table(tmp_path / "table", n_train=8, n_val=2)
    clean = run_train(_cfg(tmp_path / "a", **_job(root, tiny_model_dir, 6)))
    cfg = _cfg(tmp_path / "b")  # checkpoint_every=2
    with pytest.raises(Exception) as e:
        run_train(
            _cfg(tmp_path / "b", **_job(root, tiny_model_dir, 6)), loop=crash_at_checkpoint(4)
        )
    assert "injected failure" in str(e.value)
    crashed = latest_run(cfg.path("checkpoints"))
    assert json.loads((latest_checkpoint(crashed) / STATE).read_text())["step"] == 2
    lines = (crashed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]  # 3-4: replayed on resume
    resumed = run_train(cfg, resume=True)  # table, base and step cap: from the run's run.json
    assert (
        resumed["run"]["resumed"]
        and resumed["train_state"]["step"] == clean["train_state"]["step"] == 6
    )
    steps = [
        json.loads(x)["step"] for x in Path(resumed["run"]["metrics"]).read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6]
    a = load_file(Path(clean["adapter_dir"]) / "adapter_model.safetensors")
    b = load_file(Path(resumed["adapter_dir"]) / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max() < 1e-6 for k in a)


@pytest.mark.slow
def test_cli_trains_a_few_steps_on_the_embedded_smollm2(ray_local, tmp_path):
    """`radgpt train` on the real default: imports SmolLM2 from the wheel, 2 steps, PEFT adapter."""
    from radgpt.cli import main
    from radgpt.model.base import read_adapter_record

    root = make_table(tmp_path / "table", n_train=4, n_val=2)
    out = tmp_path / "adapter"
    sets = ["paths.root=" + str(tmp_path / "var"), "train.effective_batch=2", "train.micro_batch=1"]
    sets += ["train.cutoff_len=128", "train.checkpoint_every=1"]
    argv = ["train", "--data", str(root), "--out", str(out), "--max-steps", "2"]
    assert main(argv + [x for kv in sets for x in ("--set", kv)]) == 0
    rec = read_adapter_record(out)
    assert rec["base_model"].endswith("smollm2-135m-instruct") and rec["train_state"]["step"] == 2
    assert (out / "adapter_model.safetensors").is_file() and rec["metrics"]["val_loss"]
    # SmolLM2 q_proj 576->576, v_proj 576->192, 30 layers, r=8
    assert rec["train_state"]["trainable_params"] == 30 * 8 * ((576 + 576) + (576 + 192))
    assert (
        rec["metrics"]["first_loss"] < 6
    )  # a real model already knows English: far below ln(49152)
