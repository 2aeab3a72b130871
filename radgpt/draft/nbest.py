"""n-best drafts by first-token branching, sharing one prompt prefill; the reranker that picks one.

    from radgpt.draft.nbest import branch_decode, rerank
    cands = branch_decode(model, prompts, n=[4, 1, ...], pad=..., eos=[...], max_new_tokens=96)
    # per prompt: [(token ids, sum log-prob, ended at EOS), ...]: candidate 0 is the greedy draft
    best = rerank(texts, logprobs, lengths, findings_labels, usual, weight=2.0,
                  neighbours=["No active disease.", ...], neighbour_weight=1.0)

The prompt (~450 tokens with 3 retrieved examples) is what costs on CPU, not the ~10 tokens of an
Impression: so the prompts of a batch are prefilled ONCE, the n most probable first tokens of each
open n branches that share the prompt's key/value cache (copied, not recomputed), and each branch
continues greedily. Branch 0 starts with the most probable token: it is the greedy draft. The first
token is where an IU Impression decides between "No acute ..." and "Mild cardiomegaly ...", so the
branches differ where it matters. A prompt with n=1 is plain greedy decoding: the engine's greedy
path is this loop with n=1 everywhere. Rows that stopped leave the batch (and its KV cache) as the
batch goes on, so a batch does not decode every row until its longest draft stops.

rerank: mean token log-prob + weight x (number of the Findings' usually-carried positive
observations the candidate states) - weight x (number of findings it adds, adds_finding)
+ neighbour_weight x the candidate's mean ROUGE-1 F1 against the Impressions of the report's
retrieved train neighbours (draft.rerank_neighbours): among drafts that carry the same findings,
the wording radiologists used for similar Findings ("No active disease." vs "No acute
cardiopulmonary abnormality."). Ties keep the earlier candidate (greedy first); a branch that did
not end at EOS is not a candidate.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Collection, Sequence

from radgpt.draft.flags import consistency
from radgpt.model.labeler import label


def _cache_kw(model) -> str:
    """The forward() keyword of the KV cache: `cache` (transformers >= 5.2x) or `past_key_values`."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def branch_decode(
    model,
    prompts: Sequence[Sequence[int]],
    n: Sequence[int],
    *,
    pad: int,
    eos: Collection[int],
    max_new_tokens: int,
    slack: int | None = 8,
    compact: float | None = 0.25,
) -> list[list[tuple[list[int], float, bool]]]:
    """Candidates per prompt: (generated ids without EOS, sum of token log-probs, stopped at EOS).

    slack: once a prompt's greedy branch has stopped after L tokens, its other branches stop at
    2 L + slack tokens (not at EOS: stopped False), so one looping branch does not keep a whole
    batch decoding to max_new_tokens; None = every branch runs to EOS or max_new_tokens.
    compact: once this share of the batch's rows (at least one) has stopped, they leave the batch
    and its KV cache (a copy of the cache each time, so not at every stop); None = finished rows
    decode padding until the batch's last branch stops (a batch of 64 greedy IU drafts decoded 3x
    the tokens it kept that way).
    """
    import torch

    dev = next(model.parameters()).device
    kw = _cache_kw(model)
    width = max(len(p) for p in prompts)
    x = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=dev)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    eos_t = torch.tensor(sorted(eos), device=dev)
    with torch.inference_mode():
        # logits at the last position only, as generate() asks: (B, 1, 49k), not (B, T, 49k)
        # (8 IU prompts of ~400 tokens: ~320 MB of bf16 logits, ~20% of the prefill's FLOPs)
        out = model(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=True,
                    logits_to_keep=1)  # fmt: skip
        cache = out.cache if kw == "cache" else out.past_key_values
        logp = torch.log_softmax(out.logits[:, -1, :].float(), -1)
        firsts = [logp[i].topk(k).indices.tolist() for i, k in enumerate(n)]
        rows = [i for i, f in enumerate(firsts) for _ in f]  # prompt of each branch
        index = torch.tensor(rows, device=dev)
        cache.batch_select_indices(index)  # the prompt's cache, once per branch
        tok = torch.tensor([t for f in firsts for t in f], device=dev)  # (N,) one per branch
        score = logp[index, tok]  # (N,) sum of log-probs per branch
        mask = mask[index]
        last = pos[index, -1]
        done = torch.isin(tok, eos_t)  # (N,)
        gen = torch.full((len(rows), max_new_tokens), pad, device=dev)  # (N, max_new) ids
        gen[:, 0] = tok
        live = list(range(len(rows)))  # the branches the batch's rows decode, in row order
        live_t = torch.tensor(live, device=dev)
        greedy = [j == 0 or rows[j] != rows[j - 1] for j in range(len(rows))]
        g_len: dict[int, int] = {}  # prompt -> tokens its greedy branch took (incl. EOS)
        cut: dict[int, int] = {}  # branch -> tokens kept when slack stopped it
        for step in range(1, max_new_tokens):
            d = done.tolist()  # the step's one device sync: stops, slack and compaction read it
            for j in range(len(rows)) if slack is not None else ():
                if greedy[j] and d[j] and rows[j] not in g_len:
                    g_len[rows[j]] = step
                lim = g_len.get(rows[j])
                if lim is not None and not d[j] and step >= 2 * lim + slack:
                    cut[j], d[j] = step, True
                    done[j] = True
            if all(d):
                break
            keep = [k for k, j in enumerate(live) if not d[j]]
            if compact is not None and len(live) - len(keep) >= max(1, compact * len(live)):
                # drop finished rows from the batch (their cache too): later steps decode only
                # the branches still running, not the batch's longest to its end
                k_t = torch.tensor(keep, device=dev)
                cache.batch_select_indices(k_t)
                live, live_t = [live[k] for k in keep], live_t[k_t]
                mask, last, tok = mask[k_t], last[k_t], tok[k_t]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = model(input_ids=tok[:, None], attention_mask=mask,
                        position_ids=(last + step)[:, None], use_cache=True, **{kw: cache})  # fmt: skip
            lp = torch.log_softmax(out.logits[:, -1, :].float(), -1)
            nxt = lp.argmax(-1)
            fin = done[live_t]
            tok = torch.where(fin, torch.full_like(nxt, pad), nxt)
            score[live_t] += torch.where(fin, torch.zeros_like(nxt, dtype=score.dtype),
                                         lp.gather(1, nxt[:, None])[:, 0])  # fmt: skip
            gen[live_t, step] = tok
            done[live_t] = fin | torch.isin(tok, eos_t)
    # a row without EOS or cut ran every step (the loop ends early only once all are done)
    seqs, scores = gen.tolist(), score.tolist()
    eos_set = set(eos)
    res: list[list[tuple[list[int], float, bool]]] = [[] for _ in prompts]
    for b, (i, s) in enumerate(zip(rows, seqs, strict=True)):
        if b in cut:
            res[i].append((s[: cut[b]], scores[b], False))
            continue
        stop = next((j for j, v in enumerate(s) if v in eos_set), None)
        res[i].append((s if stop is None else s[:stop], scores[b], stop is not None))
    return res


def rerank(
    texts: Sequence[str],
    logprobs: Sequence[float],
    lengths: Sequence[int],
    findings_labels: dict[str, str],
    usual: Collection[str],
    weight: float,
    stopped: Sequence[bool] | None = None,
    neighbours: Sequence[str] = (),
    neighbour_weight: float = 0.0,
) -> int:
    """Index of the candidate to keep (see the module doc); a candidate other than the first
    that did not stop at EOS (stopped[i] False: cut or truncated) is never kept."""
    want = {o for o, s in findings_labels.items() if s == "positive" and o in usual}
    best, best_score = 0, float("-inf")
    for i, (t, lp, n) in enumerate(zip(texts, logprobs, lengths, strict=True)):
        if i and stopped is not None and not stopped[i]:
            continue
        obs = consistency(findings_labels, label(t), usual)
        omitted = sum(x.startswith("omits_finding:") for x in obs)
        added = sum(x.startswith("adds_finding:") for x in obs)
        s = lp / max(n, 1) + weight * (len(want) - omitted - added)
        if neighbours and neighbour_weight:
            s += neighbour_weight * agreement(t, neighbours)
        if s > best_score:
            best, best_score = i, s
    return best


@functools.cache
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)  # as radgpt.evaluation.rouge


def agreement(text: str, neighbours: Sequence[str]) -> float:
    """Mean ROUGE-1 F1 (0-1) of `text` against each neighbour Impression."""
    sc = _scorer()
    return sum(sc.score(r or "", text)["rouge1"].fmeasure for r in neighbours) / len(neighbours)
