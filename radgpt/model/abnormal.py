"""Do these Findings read abnormal to radiologists? P(the Impression states a pathology | Findings).

    from radgpt.model import abnormal
    m = abnormal.fit(train_findings, train_impressions)   # JSON-able dict (vocabulary, idf, weights)
    abnormal.prob(m, ["No stable cardiomegaly. No focal consolidation, pneumothorax or effusion.",
                      "Heart size normal. Lungs are clear. No effusion or pneumothorax."])
    # -> array([0.78, 0.006]) with the shipped model (models/iu-default/carry_rates.json)

A TF-IDF (word 1-2-grams of at least MIN_DF train reports) logistic regression, learned from the
train split: the target is whether the radiologist's Impression states a pathology positively
(labeler observations other than No Finding and Support Devices). It reads the Findings' wording
as a whole, also where the labeler finds nothing positive (infiltrates that "have resolved" in the
interval: the radiologist wrote resolving edema; a typo, "No stable cardiomegaly"), so drafting's
`reads_normal` flag (radgpt.draft.flags) can mark a draft that reads normal where radiologists
would not have written a normal Impression: dangerous misses no finding-level check sees. It does
not read everything: a "vague lucency" in a rib (the radiologist: possible fracture) scores 0.07.
Chosen on the IU validate split (2026-12-01; AUC of the target): C 4 -> 0.951, C 1 0.943,
binary 1-2-grams with L1 0.931-0.933; MIN_DF 5 vs 2: 0.951 both, half the vocabulary.
Classes are balanced in training, so 0.5 is the decision boundary (draft.abnormal_threshold).
The model is stored rounded (6 decimals) and always applied from that form: one way to predict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from radgpt.model.labeler import PATHOLOGIES, POS, label

MIN_DF = 5  # an n-gram of fewer train reports is left out (and never stored)
C = 4.0  # inverse L2 strength (validate AUC above)
NGRAMS = (1, 2)
MIN_REPORTS = 20  # fewer train reports, or one class only: no model (the flag stays off)


def states_pathology(impression: str | None) -> bool:
    """The target: the Impression states a pathology positively."""
    lab = label(impression)
    return any(lab[o] == POS for o in PATHOLOGIES)


def _vectorizer(vocabulary=None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=NGRAMS, min_df=MIN_DF, sublinear_tf=True,
                           lowercase=True, vocabulary=vocabulary)  # fmt: skip


def fit(findings: Iterable[str | None], impressions: Iterable[str | None]) -> dict | None:
    """The model as a JSON-able dict, or None when the reports cannot train one."""
    from sklearn.linear_model import LogisticRegression

    f = [x or "" for x in findings]
    y = np.array([states_pathology(i) for i in impressions], dtype=int)
    if len(f) != len(y):
        raise ValueError("abnormal.fit: findings and impressions of different lengths")
    if len(f) < MIN_REPORTS or y.min() == y.max():
        return None
    vec = _vectorizer()
    try:
        x = vec.fit_transform(f)
    except ValueError:  # no n-gram in MIN_DF reports
        return None
    clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(x, y)
    terms = sorted(vec.vocabulary_, key=vec.vocabulary_.get)  # column order
    return {
        "kind": "tfidf-logreg-v1",
        "ngrams": list(NGRAMS),
        "min_df": MIN_DF,
        "C": C,
        "reports": len(f),
        "positive": int(y.sum()),
        "terms": terms,
        "idf": [round(float(v), 6) for v in vec.idf_],
        "weights": [round(float(v), 6) for v in clf.coef_[0]],
        "bias": round(float(clf.intercept_[0]), 6),
    }


def prob(model: dict, findings: Sequence[str | None]) -> np.ndarray:
    """P(the Impression states a pathology) per Findings text, shape (len(findings),)."""
    vec = _vectorizer({t: i for i, t in enumerate(model["terms"])})
    vec.idf_ = np.asarray(model["idf"], dtype=np.float64)
    x = vec.transform([f or "" for f in findings])
    z = x @ np.asarray(model["weights"], dtype=np.float64) + model["bias"]
    return 1.0 / (1.0 + np.exp(-np.asarray(z).ravel()))
