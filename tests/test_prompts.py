"""Prompt templates and the response-only loss mask, with the tiny tokenizer and model.

.venv/bin/pytest tests/test_prompts.py -q
"""

from __future__ import annotations

import pytest

from radgpt.model import prompts

F = "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax."
IMP = "No acute cardiopulmonary abnormality."


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from radgpt.model.base import load_tokenizer

    return load_tokenizer(tiny_model_dir)


def test_templates_are_versioned_data():
    t = prompts.get("chat-v1")
    assert (t.name, t.version, t.kind) == ("chat-v1", 1, "chat")
    assert prompts.get("alpaca-v1").kind == "plain"
    with pytest.raises(KeyError, match="no prompt template"):
        prompts.get("nope")
    with pytest.raises(KeyError, match="unknown task"):
        prompts.instruction("nope")


def test_chat_prompt_uses_tokenizer_template(tok):
    p = prompts.get("chat-v1").prompt(tok, "impression", F, examples=[("Ex findings.", "Ex imp.")])
    assert p.startswith("<|im_start|>user\n" + prompts.TASKS["impression"])
    assert p.endswith("<|im_start|>assistant\n")
    assert "Ex findings." in p and "Ex imp." in p and F in p
    assert prompts.get("chat-v1").target(tok, IMP) == IMP + "<|im_end|>"


def test_alpaca_prompt_and_task_field(tok):
    p = prompts.get("alpaca-v1").prompt(tok, "explain", F)
    assert "### Instruction:\n" + prompts.TASKS["explain"] in p
    assert p.endswith("### Response:\n")


def test_labels_mask_prompt_and_keep_response(tok):
    ids, labels, cut = prompts.encode(tok, prompts.get("chat-v1"), "impression", F, IMP)
    assert not cut and len(ids) == len(labels)
    n_prompt = labels.count(prompts.IGNORE)
    assert n_prompt > 0 and all(x == prompts.IGNORE for x in labels[:n_prompt])
    assert labels[n_prompt:] == ids[n_prompt:]
    assert tok.decode(labels[n_prompt:]) == IMP + "<|im_end|>"


def test_loss_counts_response_tokens_only(tok, tiny_model_dir):
    """HF loss with our labels == CE over the response positions; prompt logits get no gradient."""
    import torch
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids, labels, _ = prompts.encode(tok, prompts.get("chat-v1"), "impression", F, IMP)
    x, y = torch.tensor([ids]), torch.tensor([labels])
    out = m(input_ids=x, labels=y)
    logits = out.logits.detach().requires_grad_(True)
    n_prompt = labels.count(prompts.IGNORE)
    # position t predicts token t+1: response tokens are predicted from n_prompt-1 .. T-2
    manual = torch.nn.functional.cross_entropy(logits[0, n_prompt - 1 : -1], x[0, n_prompt:])
    assert torch.allclose(out.loss, manual, atol=1e-5)
    manual.backward()
    g = logits.grad[0].abs().sum(-1)
    assert g[: n_prompt - 1].sum() == 0 and (g[n_prompt - 1 : -1] > 0).all()


def test_truncation_cuts_findings_never_the_response(tok):
    tpl = prompts.get("chat-v1")
    long = " ".join([F] * 30)
    full, _, _ = prompts.encode(tok, tpl, "impression", long, IMP, cutoff_len=4096)
    ids, labels, cut = prompts.encode(tok, tpl, "impression", long, IMP, cutoff_len=96)
    assert cut and len(full) > 96 >= len(ids)
    n_prompt = labels.count(prompts.IGNORE)
    assert tok.decode(ids[n_prompt:]) == IMP + "<|im_end|>"
    assert tok.decode(ids[:n_prompt]).endswith("<|im_start|>assistant\n")


def test_truncation_drops_examples_before_findings(tok):
    tpl = prompts.get("chat-v1")
    shots = [("Mild cardiomegaly. " * 10, "Cardiomegaly."), ("Stable. " * 10, "Stable.")]
    budget = len(tpl.fit(tok, "impression", F, shots[:1], 10_000)[0])
    ids, cut = tpl.fit(tok, "impression", F, shots, budget)
    text = tok.decode(ids)
    assert cut and F in text and "Cardiomegaly." in text and "Stable." not in text


def test_response_too_long_is_dropped(tok):
    assert (
        prompts.encode(tok, prompts.get("chat-v1"), "impression", F, IMP * 40, cutoff_len=32)
        is None
    )


def test_obs_template_lists_the_positive_observations(tok):
    """chat-obs-v1: after the report's and each example's Findings, what the labeler finds stated
    positively in them; training and drafting build it with the same fit()."""
    f = "Mild cardiomegaly. Small right pleural effusion. No pneumothorax."
    t = prompts.get("chat-obs-v1")
    p = t.prompt(tok, "impression", f, examples=[(F, IMP)])
    assert f"Findings: {f}\nPositive observations: cardiomegaly, pleural effusion" in p
    assert f"Findings: {F}\nPositive observations: none\nImpression: {IMP}" in p
    assert "Positive observations" not in prompts.get("chat-v1").prompt(tok, "impression", f)
    ids, labels, _ = prompts.encode(tok, t, "impression", f, IMP, examples=[(F, IMP)])
    assert tok.decode(ids[: labels.count(prompts.IGNORE)]) == p
