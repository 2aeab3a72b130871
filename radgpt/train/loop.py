"""The Ray Train worker loop: LoRA (or full) fine-tuning with checkpoints, resume and metrics.

Runs once per worker inside `TorchTrainer` (radgpt/train/run.py starts it). Every worker reads its
Ray Data shard and tokenizes it; the encoded shards are then all-gathered and sorted by report_id,
so the batch order is a pure function of (seed, epoch) and a resumed run replays exactly the
batches an uninterrupted one would have seen. Optimizer step s, micro-step a on rank r uses epoch
batch (s_in_epoch * grad_accum + a) * world + r.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

from radgpt.model import prompts
from radgpt.train import data

STATE = "train_state.json"


def expected_trainable(model, cfg) -> int:
    """Trainable parameters implied by the config and the module shapes (before wrapping).

    LoRA adds A (r x in) and B (out x r) to each targeted Linear: r * (in + out) parameters.
    """
    import torch

    if cfg.train.method == "full":
        return sum(p.numel() for p in model.parameters())
    lc, n, hit = cfg.lora, 0, 0
    for name, mod in model.named_modules():
        leaf = name.split(".")[-1]
        if isinstance(mod, torch.nn.Linear) and leaf in lc.target_modules:
            hit += 1
            n += lc.r * (mod.in_features + mod.out_features)
            if lc.bias == "lora_only" and mod.bias is not None:
                n += mod.bias.numel()
    if not hit:
        raise ValueError(f"lora.target_modules {lc.target_modules} match no Linear in the model")
    if lc.bias == "all":
        n += sum(p.numel() for k, p in model.named_parameters() if k.endswith(".bias"))
    return n


def build_model(model, cfg):
    """peft.LoraConfig 1:1 from cfg.lora (or the plain model for method=full); asserts the count."""
    want = expected_trainable(model, cfg)
    if cfg.train.method == "lora":
        from peft import LoraConfig, get_peft_model

        from radgpt.model.base import peft_quiet

        lc = cfg.lora
        with peft_quiet():
            model = get_peft_model(
                model,
                LoraConfig(
                    r=lc.r,
                    lora_alpha=lc.lora_alpha,
                    lora_dropout=lc.lora_dropout,
                    target_modules=list(lc.target_modules),
                    bias=lc.bias,
                    task_type="CAUSAL_LM",
                ),
            )
    got = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if got != want:
        raise AssertionError(f"trainable parameters {got} != {want} expected from the config")
    return model, got


def checkpoint_activations(model) -> None:
    """Save only each decoder layer's input for backward; the layer is recomputed there.

    Non-reentrant checkpointing: the frozen embeddings' output needs no requires_grad hook (LoRA),
    and the RNG state is replayed, so dropout masks and gradients equal the plain run's."""
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def frozen_to_bf16(model) -> int:
    """Store the frozen weights of Linear layers in bf16 (LoRA's base layers); how many.

    Under bf16 autocast a Linear multiplies bf16(weight) anyway: storing it so gives the same
    losses without a cast per op and per micro-step. Not the LM head when it is tied to the
    input embedding (the embedding lookup stays fp32), nor anything trainable."""
    import torch

    head = model.get_output_embeddings()
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    n = 0
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear) and not mod.weight.requires_grad:
            if tied and mod is head:
                continue
            mod.weight.data = mod.weight.data.to(torch.bfloat16)
            n += 1
    return n


def load_init(model, d: Path, method: str) -> int:
    """Start from an earlier adapter (train.init_adapter): copy its LoRA weights into the fresh
    LoRA layers (or, method full, its whole state); returns how many tensors were loaded."""
    from safetensors.torch import load_file

    if method == "lora":
        from peft import set_peft_model_state_dict

        sd = load_file(d / "adapter_model.safetensors")
        res = set_peft_model_state_dict(model, sd)
        missing = [k for k in res.missing_keys if "lora_" in k]
        if res.unexpected_keys or missing:
            raise ValueError(
                f"init adapter {d} does not fit this LoRA: unexpected {res.unexpected_keys[:3]}, "
                f"missing {missing[:3]}"
            )
        return len(sd)
    from transformers import AutoModelForCausalLM

    sd = AutoModelForCausalLM.from_pretrained(d).state_dict()
    model.load_state_dict(sd)
    return len(sd)


def lr_lambda(schedule: str, warmup: int, total: int):
    def f(step: int) -> float:  # multiplier of cfg.train.lr at optimizer step `step`
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        frac = (step - warmup) / max(1, total - warmup)
        return max(0.0, 1 - frac) if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * frac))

    return f


def _gather(items: list, world: int) -> list:
    if world == 1:
        return items
    import torch.distributed as dist

    parts = [None] * world
    dist.all_gather_object(parts, items)
    return [x for p in parts for x in p]


def _allsum(vals: list[float], device) -> list[float]:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return vals
    t = torch.tensor(vals, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _shard_encode(name: str, tok, tpl, cfg, retr, world: int) -> tuple[list[dict], dict]:
    import ray.train

    shard = ray.train.get_dataset_shard(name)
    rows = list(shard.iter_rows()) if shard is not None else []
    # train: neighbours exclude the report itself; validate: prompts exactly as at drafting time
    k = cfg.train.retrieval_k
    ex, st = data.encode(
        data.records(rows, cfg.train.task), tok, tpl, cfg.train.cutoff_len, retr, k
    )
    ex = sorted(_gather(ex, world), key=lambda e: e["report_id"])
    st = {k2: sum(s[k2] for s in _gather([st], world)) for k2 in st}
    return ex, st


def response_loss(model, b: dict, reduction: str = "mean"):
    """Next-token cross-entropy over the response tokens (labels != IGNORE), the model's own
    `loss` for reduction "mean". Logits are projected only at the positions where some row of the
    batch has a target (logits_to_keep): an IU prompt is ~450 tokens and its Impression ~15, so
    the full (B, T, 49k) fp32 logits (~88 MB per example) were ~97% for tokens the loss ignores."""
    import torch

    lbl = b["labels"][:, 1:]  # (B, T-1): position t predicts token t+1
    pos = (lbl != prompts.IGNORE).any(0).nonzero()[:, 0]  # (K,) positions with a target
    out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], logits_to_keep=pos)
    return torch.nn.functional.cross_entropy(
        out.logits.flatten(0, 1).float(), lbl[:, pos].flatten(), reduction=reduction,
        ignore_index=prompts.IGNORE,
    )  # fmt: skip


def _val_loss(
    model, val: list[dict], cfg, pad_id: int, rank: int, world: int, device, amp: bool
) -> float:
    """Mean response CE over the validate split, under the training's autocast (amp: bf16)."""
    import torch

    model.eval()
    s, n = 0.0, 0.0
    mine = val[rank::world]
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for i in range(0, len(mine), cfg.train.micro_batch):
            b = {
                k: v.to(device)
                for k, v in data.collate(mine[i : i + cfg.train.micro_batch], pad_id).items()
            }
            s += response_loss(model, b, reduction="sum").item()
            n += (b["labels"][:, 1:] != prompts.IGNORE).sum().item()
    model.train()
    s, n = _allsum([s, n], device)
    return s / max(n, 1)


def _save(d: Path, model, opt, sched, state: dict) -> None:
    import torch

    m = model.module if hasattr(model, "module") else model
    m.save_pretrained(d, safe_serialization=True)
    torch.save(opt.state_dict(), d / "optimizer.pt")
    torch.save(sched.state_dict(), d / "scheduler.pt")
    torch.save({"torch": torch.get_rng_state()}, d / "rng.pt")
    (d / STATE).write_text(json.dumps(state, indent=2))


def _restore(d: Path, model, opt, sched, method: str) -> dict:
    import torch
    from safetensors.torch import load_file

    m = model.module if hasattr(model, "module") else model
    if method == "lora":
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(m, load_file(d / "adapter_model.safetensors"))
    else:
        from transformers import AutoModelForCausalLM

        m.load_state_dict(AutoModelForCausalLM.from_pretrained(d).state_dict())
    opt.load_state_dict(torch.load(d / "optimizer.pt", weights_only=False))
    sched.load_state_dict(torch.load(d / "scheduler.pt", weights_only=False))
    torch.set_rng_state(torch.load(d / "rng.pt", weights_only=False)["torch"])
    return json.loads((d / STATE).read_text())


def train_loop(config: dict) -> None:
    """Ray Train entry: config = {cfg (JSON), base, metrics, retrieval, resume_from, init_adapter}."""
    import psutil
    import ray.train
    import ray.train.torch
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM

    from radgpt.config import Config
    from radgpt.model.base import load_tokenizer, resolve_dtype
    from radgpt.model.retrieval import Retriever

    cfg = Config.from_json(config["cfg"])
    t = cfg.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(t.cpus_per_worker)
    amp = resolve_dtype(t.dtype, device.type) == "bfloat16"  # bf16 autocast
    torch.manual_seed(t.seed)
    tok = load_tokenizer(config["base"])
    tpl = prompts.get(cfg.model.template)
    base = AutoModelForCausalLM.from_pretrained(config["base"], dtype=torch.float32)
    model, n_train = build_model(base, cfg)
    if config.get("init_adapter"):  # a checkpoint of this run, when resuming, overrides it below
        load_init(model, Path(config["init_adapter"]), t.method)
    if amp and t.method == "lora":
        frozen_to_bf16(model)
    if t.activation_checkpointing:
        checkpoint_activations(model)
    model = ray.train.torch.prepare_model(model)
    # the training step's forward (and so its backward) compiled; the eager module shares its
    # weights for validation and checkpoints. dynamic: batch lengths vary, one graph for all
    fwd = torch.compile(model, dynamic=True) if t.compile else model

    retr = Retriever.load(config["retrieval"]) if config.get("retrieval") else None
    train, tstats = _shard_encode("train", tok, tpl, cfg, retr, world)
    val, vstats = _shard_encode("validate", tok, tpl, cfg, retr, world)
    if not train:
        raise ValueError(
            "no trainable examples: the train split is empty or nothing fits cutoff_len"
        )
    lengths = [len(e["input_ids"]) for e in train]
    n_batches = math.ceil(len(train) / t.micro_batch)
    per_epoch = math.ceil(n_batches / (t.grad_accum * world))  # optimizer steps per epoch
    total = t.max_steps or max(1, math.ceil(t.epochs * per_epoch))
    warmup = math.ceil(t.warmup_ratio * total)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(t.lr_schedule, warmup, total))
    step = 0
    # Ray's own restore (same run name) or our latest checkpoint of the run being resumed
    ckpt = ray.train.get_checkpoint()
    if ckpt is None and config.get("resume_from"):
        ckpt = ray.train.Checkpoint(config["resume_from"])
    if ckpt:
        with ckpt.as_directory() as d:
            step = _restore(Path(d), model, opt, sched, t.method)["step"]
    metrics_path = Path(config["metrics"])
    if rank == 0:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        old = metrics_path.read_text().splitlines() if metrics_path.exists() else []
        keep = [ln for ln in old if json.loads(ln).get("step", 0) <= step]  # drop replayed steps
        metrics_path.write_text("".join(ln + "\n" for ln in keep))
        print(
            f"[radgpt train] examples={len(train)} val={len(val)} truncated={tstats['truncated']} "
            f"dropped={tstats['dropped']} trainable={n_train} steps={total} per_epoch={per_epoch} "
            f"grad_accum={t.grad_accum} world={world} start_step={step}",
            flush=True,
        )
    head = {
        "examples": len(train),
        "val_examples": len(val),
        "truncated": tstats["truncated"],
        "dropped": tstats["dropped"],
        "val_truncated": vstats["truncated"],
        "trainable_params": n_train,
        "total_steps": total,
        "steps_per_epoch": per_epoch,
        "dtype": "bfloat16" if amp else "float32",  # train.dtype as resolved on the worker
        "compiled": t.compile,
        "activation_checkpointing": t.activation_checkpointing,
    }
    bar = tqdm(total=total, initial=step, desc="train", disable=rank != 0, mininterval=1.0)
    model.train()
    proc = psutil.Process()
    while step < total:
        epoch, within = divmod(step, per_epoch)
        order = data.batches(lengths, t.micro_batch, t.seed, epoch, t.group_by_length)
        torch.manual_seed(t.seed * 1_000_003 + step * world + rank)  # dropout rng = f(step, rank)
        t0 = time.perf_counter()
        loss_sum, tokens, n_ex = 0.0, 0, 0
        for a in range(t.grad_accum):
            j = ((within * t.grad_accum + a) * world + rank) % len(order)
            b = data.collate([train[i] for i in order[j]], tok.pad_token_id)
            b = {k: v.to(device) for k, v in b.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = response_loss(fwd, b) / t.grad_accum  # mean CE over response tokens
            loss.backward()
            loss_sum += loss.item()
            tokens += int(b["attention_mask"].sum())
            n_ex += b["input_ids"].shape[0]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        loss_sum, tokens, n_ex = _allsum([loss_sum, tokens, n_ex], device)
        dt = time.perf_counter() - t0
        m = {
            "step": step,
            "epoch": epoch,
            "loss": loss_sum / world,
            "lr": sched.get_last_lr()[0],
            "tokens_per_s": tokens / dt,
            "examples_per_s": n_ex / dt,
            "step_s": dt,
            "rss_mb": proc.memory_info().rss / 2**20,
        }
        if device.type == "cuda":
            m["cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        if step % per_epoch == 0 or step == total:  # end of an epoch (or of the run)
            m["val_loss"] = (
                _val_loss(model, val, cfg, tok.pad_token_id, rank, world, device, amp)
                if val
                else None
            )
        bar.update(1)
        bar.set_postfix(loss=f"{m['loss']:.3f}", lr=f"{m['lr']:.2e}")
        if rank == 0:
            with metrics_path.open("a") as f:
                f.write(json.dumps(m) + "\n")
        if step % t.checkpoint_every == 0 or step == total:
            state = {**head, "step": step, "epoch": epoch, "metrics": m}
            with tempfile.TemporaryDirectory() as d:
                ck = None
                if rank == 0:
                    _save(Path(d), model, opt, sched, state)
                    ck = ray.train.Checkpoint.from_directory(d)
                ray.train.report({**m, **head}, checkpoint=ck)
    bar.close()
