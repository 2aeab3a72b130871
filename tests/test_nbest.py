"""n-best by first-token branching on the tiny test model: branch 0 is the greedy draft, branches
share the prompt's prefill, and the reranker prefers a candidate that carries the Findings.

.venv/bin/pytest tests/test_nbest.py -q
"""

import pytest

from radgpt.draft.nbest import agreement, branch_decode, rerank
from radgpt.model.labeler import label


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(
        tiny_model_dir
    )


def greedy(model, prompts, pad, eos, max_new):
    import torch

    width = max(map(len, prompts))
    x = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    m = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        y = model.generate(input_ids=x, attention_mask=m, max_new_tokens=max_new, do_sample=False,
                           eos_token_id=eos, pad_token_id=pad)  # fmt: skip
    out = []
    for row in y[:, width:].tolist():
        stop = next((j for j, v in enumerate(row) if v in eos), None)
        out.append(row if stop is None else row[:stop])
    return out


def test_branch_zero_is_greedy_and_branches_differ(tiny):
    model, tok = tiny
    texts = ["The heart size is normal. The lungs are clear.", "Mild cardiomegaly.",
             "No pleural effusion or pneumothorax. Right lower lobe consolidation is seen."]  # fmt: skip
    prompts = [tok(t)["input_ids"] for t in texts]
    eos = [tok.eos_token_id]
    want = greedy(model, prompts, tok.pad_token_id, eos, 12)
    got = branch_decode(model, prompts, [3, 1, 2], pad=tok.pad_token_id, eos=eos, max_new_tokens=12)
    assert [len(c) for c in got] == [3, 1, 2]
    assert [c[0][0] for c in got] == want  # branch 0 = greedy, token for token
    firsts = [c[0][0] for c in got[0]]
    assert len(set(firsts)) == 3  # each branch opens with another token
    for cands in got:
        lps = [lp for _, lp, _ in cands]
        assert all(lp <= 0 for lp in lps)
        assert all(len(t) <= 12 for t, _, _ in cands)


def test_prefill_projects_the_last_position_only(tiny):
    """The LM head sees one position per row at every step, prefill included: (B, 1, hidden),
    not (B, T, hidden) (an IU batch of 8 would hold ~320 MB of bf16 logits it never reads)."""
    model, tok = tiny
    prompts = [tok(t)["input_ids"] for t in ["The heart size is normal.", "Mild cardiomegaly."]]
    seen = []
    h = model.get_output_embeddings().register_forward_hook(lambda m, a, o: seen.append(a[0].shape))
    try:
        branch_decode(model, prompts, [2, 1], pad=tok.pad_token_id, eos=[tok.eos_token_id],
                      max_new_tokens=4)  # fmt: skip
    finally:
        h.remove()
    assert seen[0][0] == 2 and len(seen) >= 2  # the prefill, then decode steps of 3 branches
    assert {s[1] for s in seen} == {1}


def test_rerank_prefers_carrying_candidates_and_keeps_greedy_on_ties():
    findings = label("Small left pleural effusion. Heart size normal.")
    usual = {"Pleural Effusion", "Cardiomegaly"}
    texts = [
        "No acute cardiopulmonary abnormality.",
        "Small left pleural effusion.",
        "Cardiomegaly.",
    ]
    # greedy is more probable per token, but drops the effusion: the effusion candidate wins
    assert rerank(texts, [-1.0, -3.0, -2.0], [5, 6, 2], findings, usual, weight=1.0) == 1
    # weight 0: plain mean log-prob; equal scores keep the earlier candidate
    assert rerank(texts, [-1.0, -3.0, -2.0], [5, 6, 2], findings, usual, weight=0.0) == 0
    assert rerank(texts[:2], [-2.0, -2.0], [2, 2], label("Lungs clear."), usual, 1.0) == 0
    # an added finding costs as much as a carried one gains
    assert rerank(texts, [-1.0, -9.0, -1.0], [1, 1, 1], findings, usual, weight=1.0) == 0


def test_rerank_prefers_the_neighbours_wording_but_never_over_a_finding():
    """Among candidates that carry the same findings, the wording of the retrieved neighbours'
    Impressions wins; at rerank_weight 2 x neighbour weight 1 a carried finding still wins."""
    texts = ["No acute cardiopulmonary abnormality.", "No active disease."]
    nb = ["No active disease.", "No active disease. Stable.", "Normal chest"]
    clear, usual = label("Heart size normal. Lungs clear."), {"Pleural Effusion"}
    assert rerank(texts, [-1.0, -1.5], [5, 4], clear, usual, 2.0) == 0  # greedy: more probable
    # mean ROUGE-1 F1: 1, 6/7 (3 of 4 words), 0; the greedy draft shares only "No"
    assert agreement(texts[1], nb) == pytest.approx((1 + 6 / 7 + 0) / 3)
    assert agreement(texts[1], nb) > agreement(texts[0], nb) + 0.4
    assert rerank(texts, [-1.0, -1.5], [5, 4], clear, usual, 2.0, None, nb, 1.0) == 1
    assert rerank(texts, [-1.0, -1.5], [5, 4], clear, usual, 2.0, None, nb, 0.0) == 0
    assert rerank(texts, [-1.0, -1.5], [5, 4], clear, usual, 2.0, None, (), 1.0) == 0
    eff = label("Small left pleural effusion.")
    both = ["No active disease.", "Small left pleural effusion."]
    assert rerank(both, [-1.0, -1.0], [4, 6], eff, usual, 2.0, None, nb, 1.0) == 1


def test_slack_stops_long_branches_once_greedy_is_done(tiny):
    model, tok = tiny
    prompts = [tok(t)["input_ids"] for t in ("Mild cardiomegaly.", "The lungs are clear.")]
    eos = [tok.eos_token_id]
    kw = dict(pad=tok.pad_token_id, eos=eos, max_new_tokens=24)
    full = branch_decode(model, prompts, [4, 4], slack=None, **kw)
    short = branch_decode(model, prompts, [4, 4], slack=0, **kw)
    for f, s in zip(full, short, strict=True):
        g = len(f[0][0]) + f[0][2]  # greedy tokens incl. EOS
        assert s[0] == f[0]  # the greedy branch is never cut
        for (ft, flp, fst), (st, slp, sst) in zip(f[1:], s[1:], strict=True):
            if fst and len(ft) + 1 <= 2 * g:  # ended before the cut: the same candidate
                assert (st, sst) == (ft, True) and slp == pytest.approx(flp, abs=1e-4)
            elif not f[0][2]:  # greedy ran to the limit: nothing is cut
                assert st == ft
            else:  # cut after 2 x greedy tokens, not at EOS
                assert len(st) == 2 * g and not sst and st == ft[: 2 * g]


def test_rerank_skips_candidates_that_did_not_stop():
    findings = label("Small left pleural effusion.")
    texts = ["No acute disease.", "Small left pleural effusion, and"]
    usual = {"Pleural Effusion"}
    assert rerank(texts, [-1.0, -1.0], [4, 6], findings, usual, 1.0) == 1
    assert rerank(texts, [-1.0, -1.0], [4, 6], findings, usual, 1.0, [True, False]) == 0


@pytest.fixture(scope="module")
def sharp(tiny):
    """The tiny model with weights drawn wider: its greedy drafts vary token to token (the tiny
    one repeats one token), so rows can be made to stop at different steps."""
    import copy

    import torch

    model = copy.deepcopy(tiny[0])
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.5)
    return model, tiny[1]


def test_finished_rows_leave_the_batch_with_the_same_drafts(sharp):
    """Once a quarter of the rows have stopped they stop being decoded (the batch and its cache
    shrink), and every branch is still token for token what generate() and the uncompacted loop
    give. The stop tokens are ones the greedy drafts emit at different steps."""
    model, tok = sharp
    texts = ["The heart size is normal. The lungs are clear.", "Mild cardiomegaly.",
             "No pleural effusion or pneumothorax.", "Right lower lobe consolidation is seen."]  # fmt: skip
    prompts = [tok(t)["input_ids"] for t in texts]
    pad, n = tok.pad_token_id, [2, 1, 1, 1]
    free = greedy(model, prompts, pad, [-1], 16)  # no stop: 16 tokens each
    eos = [free[0][2], free[1][6]]  # prompt 0 stops by its 3rd token, prompt 1 by its 7th
    rows = []
    h = model.register_forward_hook(lambda m, a, kw, o: rows.append(kw["input_ids"].shape[0]),
                                    with_kwargs=True)  # fmt: skip
    try:
        got = branch_decode(model, prompts, n, pad=pad, eos=eos, max_new_tokens=16, slack=None)
    finally:
        h.remove()
    ref = branch_decode(model, prompts, n, pad=pad, eos=eos, max_new_tokens=16, slack=None,
                        compact=None)  # fmt: skip
    assert [c[0][0] for c in got] == greedy(model, prompts, pad, eos, 16)
    assert [[(t, s) for t, _, s in c] for c in got] == [[(t, s) for t, _, s in c] for c in ref]
    for c, r in zip(got, ref, strict=True):
        assert [lp for _, lp, _ in c] == pytest.approx([lp for _, lp, _ in r], abs=1e-4)
    assert [c[0][2] for c in got[:2]] == [True, True] and not all(c[0][2] for c in got)
    assert rows[:2] == [4, 5]  # the prefill, then the first decode step of 5 branches
    assert min(rows[1:]) < 5 and rows[1:] == sorted(rows[1:], reverse=True)  # stopped rows left
