"""Built-in baselines that `radgpt evaluate` scores beside the drafts, on the same reports.

    from radgpt.evaluation.baselines import constant, NearestNeighbour, zero_shot, run_baselines
    constant(train_impressions)                          # majority Impression of train, one string
    NearestNeighbour().fit(train_findings, train_imps).predict(test_findings)   # list[str]
    zero_shot(cfg, test_findings)                        # base model, no adapter, same prompt

constant:   the most frequent (whitespace/case-normalized) train Impression, e.g. "No acute
            cardiopulmonary abnormality."; ties broken by first occurrence.
nn:         the retrieval TF-IDF (radgpt.model.retrieval: word 1-2 grams, sublinear tf) over train
            Findings, cosine nearest neighbour, copy its Impression.
zero-shot:  radgpt.draft.drafter.generate(cfg, findings, adapter=None): the base model with the drafting
            prompt and greedy decoding, no LoRA.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)
BASELINES = ("constant", "nn", "zero-shot")


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def constant(train_impressions: Sequence[str]) -> str:
    """Majority Impression of train (compared normalized; returns its first original spelling)."""
    imps = [s for s in train_impressions if s and s.strip()]
    if not imps:
        raise ValueError("constant baseline: the train split has no Impressions")
    counts = Counter(_norm(s) for s in imps)
    best = max(counts.values())
    return next(s for s in imps if counts[_norm(s)] == best)


class NearestNeighbour:
    """The drafting retriever's TF-IDF (radgpt.model.retrieval.Retriever) over train Findings; predict
    copies the Impression of the most similar train report (ties: the first in train order)."""

    def fit(self, findings: Sequence[str], impressions: Sequence[str]) -> NearestNeighbour:
        from radgpt.model.retrieval import Retriever

        if len(findings) != len(impressions) or not findings:
            raise ValueError(
                f"nn baseline: {len(findings)} findings vs {len(impressions)} impressions"
            )
        ids = [str(i) for i in range(len(findings))]
        self.r = Retriever(ids, [f or "" for f in findings], list(impressions))
        return self

    def neighbours(self, findings: Sequence[str]) -> np.ndarray:
        """Index of the nearest train report per query, shape [n]."""
        top = self.r.top([f or "" for f in findings], k=1)
        return np.array([t[0] for t in top], dtype=int)

    def predict(self, findings: Sequence[str]) -> list[str]:
        return [self.r.impressions[j] for j in self.neighbours(findings)]


def zero_shot(cfg, findings: Sequence[str]) -> list[str]:
    """The base model without adapter, same prompt template, greedy (radgpt.draft.drafter.generate)."""
    from radgpt.draft.drafter import generate

    return generate(cfg, list(findings), adapter=None)


def run_baselines(
    names: Sequence[str],
    train_findings: Sequence[str],
    train_impressions: Sequence[str],
    test_findings: Sequence[str],
    cfg=None,
) -> dict[str, list[str]]:
    """Predictions of each named baseline for test_findings: {name: [impression, ...]}."""
    bad = [n for n in names if n not in BASELINES]
    if bad:
        raise ValueError(f"unknown baseline(s) {bad}; choose from {', '.join(BASELINES)}")
    out: dict[str, list[str]] = {}
    for name in names:
        if name == "constant":
            out[name] = [constant(train_impressions)] * len(test_findings)
        elif name == "nn":
            nn = NearestNeighbour().fit(train_findings, train_impressions)
            out[name] = nn.predict(test_findings)
        else:
            if cfg is None:
                raise ValueError("zero-shot baseline needs a config (model.base)")
            out[name] = zero_shot(cfg, test_findings)
        log.info("baseline %s: %d predictions", name, len(out[name]))
    return out
