"""TF-IDF retrieval of similar train reports, put into prompts as examples (train.retrieval_k > 0).

    r = Retriever.fit(ids, findings, impressions)
    r.query(["..findings.."], k=2, exclude_ids=["csv:1"])  # [[(findings, impression), ...]]
    r.save(adapter_dir / "retrieval"); Retriever.load(adapter_dir / "retrieval")

Saved as a JSON corpus (ids, Findings, Impressions of the train split) + vectorizer settings; load
refits the vectorizer on the same corpus (deterministic), so nothing is pickled. The corpus is
patient text: it lives inside the adapter dir, next to weights trained on the same text.

Finding-aware retrieval (`finding_weight > 0`, drafting's `draft.retrieval_finding_weight`): the
`pool` most similar reports by TF-IDF are re-ranked by cosine + finding_weight x the share of the
query's positive observations (radgpt.model.labeler) that a candidate's Findings state positively
too, so a report with an effusion gets neighbours with an effusion (and their Impressions' wording
for it) before merely similar-sounding normal reports.

An adapter may ship without its corpus (retriever.json alone, as the default adapter in models/
does: report text never goes into the repository). Drafting then fits the retriever on the eligible
train split of the local reports table (`Retriever.from_table`): the hospital's own archive.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import numpy as np

from radgpt.runtime import sha256_bytes, write_json_atomic

log = logging.getLogger(__name__)
PARAMS = {"ngram_range": [1, 2], "min_df": 1, "sublinear_tf": True, "lowercase": True}
QUERY_BATCH = 256  # queries per similarity block: (256, n_docs) float64, ~250 MB at 122k docs


class Retriever:
    def __init__(self, ids: list[str], findings: list[str], impressions: list[str]):
        if not (len(ids) == len(findings) == len(impressions)):
            raise ValueError("ids, findings and impressions must have the same length")
        if not ids:
            raise ValueError("cannot fit a retriever on zero reports")
        self.ids, self.findings, self.impressions = list(ids), list(findings), list(impressions)
        self._row = {rid: i for i, rid in enumerate(self.ids)}

    @functools.cached_property
    def _index(self):
        """(vectorizer, (n_docs, vocab) L2-normalised TF-IDF rows), fitted on the first query:
        the corpus digest (drafting's driver) needs no fit."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(**{**PARAMS, "ngram_range": tuple(PARAMS["ngram_range"])})
        return vec, vec.fit_transform(self.findings)

    @classmethod
    def fit(cls, ids, findings, impressions) -> Retriever:
        return cls(list(ids), list(findings), list(impressions))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def digest(self) -> str:
        return sha256_bytes(json.dumps([self.ids, self.findings, self.impressions]).encode())[:16]

    def query(
        self,
        findings_list: list[str],
        k: int,
        exclude_ids: list[str | None] | None = None,
        finding_weight: float = 0.0,
        pool: int = 20,
    ) -> list[list[tuple[str, str]]]:
        """k most similar (findings, impression) per query, most similar first.

        exclude_ids[i] (a report id) is never returned for query i: at training time a report
        must not see itself. Ties break by corpus order (stable).
        """
        top = self.top(findings_list, k, exclude_ids, finding_weight, pool)
        return [[(self.findings[j], self.impressions[j]) for j in row] for row in top]

    @functools.cached_property
    def _positives(self) -> list[frozenset[str]]:
        """Positive observations of each corpus Findings (labelled on the first aware query)."""
        from radgpt.model.carry import positives
        from radgpt.model.labeler import label

        return [frozenset(positives(label(f))) for f in self.findings]

    def top(
        self,
        findings_list: list[str],
        k: int,
        exclude_ids: list[str | None] | None = None,
        finding_weight: float = 0.0,
        pool: int = 20,
    ) -> list[list[int]]:
        """Corpus indices of the k most similar reports per query (see query; finding-aware
        re-ranking of the `pool` nearest when finding_weight > 0)."""
        if k <= 0 or not findings_list:
            return [[] for _ in findings_list]
        if finding_weight > 0:
            return self._aware(findings_list, k, exclude_ids, finding_weight, max(pool, k))
        vec, matrix = self._index
        out = []
        for a in range(0, len(findings_list), QUERY_BATCH):
            q = vec.transform(findings_list[a : a + QUERY_BATCH])
            sims = (q @ matrix.T).toarray()  # cosine (rows L2-normalised): (batch, n_docs)
            for i, rid in enumerate((exclude_ids or [])[a : a + QUERY_BATCH]):
                j = self._row.get(rid) if rid is not None else None
                if j is not None:
                    sims[i, j] = -np.inf
            for row in sims:
                order = [int(row.argmax())] if k == 1 else np.argsort(-row, kind="stable")[:k]
                out.append([int(j) for j in order if row[j] > -np.inf])
        return out

    def _aware(self, findings_list, k, exclude_ids, weight: float, pool: int) -> list[list[int]]:
        from radgpt.model.carry import positives
        from radgpt.model.labeler import label

        vec, matrix = self._index
        out = []
        for i, cand in enumerate(self.top(findings_list, pool, exclude_ids)):
            want = positives(label(findings_list[i]))
            if not want:
                out.append(cand[:k])
                continue
            q = vec.transform([findings_list[i]])
            sims = (q @ matrix[cand].T).toarray()[0]
            score = [s + weight * len(want & self._positives[j]) / len(want)
                     for s, j in zip(sims, cand, strict=True)]  # fmt: skip
            order = sorted(
                range(len(cand)), key=lambda x: -score[x]
            )  # stable: cosine order on ties
            out.append([cand[x] for x in order[:k]])
        return out

    @classmethod
    def from_table(cls, root: str | Path) -> Retriever:
        """Eligible train-split reports of a canonical table, sorted by report_id (as training)."""
        import pyarrow.compute as pc

        from radgpt.table import read_reports

        cols = ["report_id", "split", "eligible", "findings", "impression"]
        t = read_reports(Path(root), columns=cols)
        t = t.filter(pc.and_(pc.equal(t["split"], "train"), pc.equal(t["eligible"], True)))
        t = t.sort_by("report_id")
        if not len(t):
            raise ValueError(f"no eligible train reports in {root} to retrieve examples from")
        return cls(*(t[c].to_pylist() for c in ("report_id", "findings", "impression")))

    @classmethod
    def for_adapter(cls, adapter_dir: str | Path, table: str | Path) -> Retriever:
        """The adapter's own corpus when it ships one, else one fitted on `table`'s train split."""
        d = Path(adapter_dir) / "retrieval"
        if (d / "corpus.json").is_file():
            return cls.load(d)
        meta = json.loads((d / "retriever.json").read_text()) if d.is_dir() else {}
        if meta and meta.get("params") != PARAMS:
            raise ValueError(f"retriever in {d} was saved with other params: {meta.get('params')}")
        r = cls.from_table(table)
        log.info(
            "retrieval corpus: %d train reports of %s, digest %s (%s the training corpus %s)",
            len(r),
            table,
            r.digest,
            "same as" if r.digest == meta.get("digest") else "not",
            meta.get("digest"),
        )
        return r

    def save(self, d: str | Path) -> Path:
        d = Path(d)
        d.mkdir(parents=True, exist_ok=True)
        corpus = {"ids": self.ids, "findings": self.findings, "impressions": self.impressions}
        (d / "corpus.json").write_text(json.dumps(corpus))
        write_json_atomic(
            d / "retriever.json",
            {"kind": "tfidf", "params": PARAMS, "n_docs": len(self), "digest": self.digest},
        )
        return d

    @classmethod
    def load(cls, d: str | Path) -> Retriever:
        d = Path(d)
        if not (d / "corpus.json").is_file():
            raise FileNotFoundError(f"no retriever in {d} (expected corpus.json, retriever.json)")
        meta = json.loads((d / "retriever.json").read_text())
        if meta.get("params") != PARAMS:
            raise ValueError(f"retriever in {d} was saved with other params: {meta.get('params')}")
        c = json.loads((d / "corpus.json").read_text())
        r = cls(c["ids"], c["findings"], c["impressions"])
        if r.digest != meta["digest"]:
            raise ValueError(f"retriever corpus in {d} does not match its digest")
        return r
