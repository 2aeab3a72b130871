"""Carry rates: how often radiologists carry a finding stated in the Findings into the Impression.

    from radgpt.model.carry import CarryRates
    c = CarryRates.fit(train_findings, train_impressions)   # counts per observation (labeler)
    c.rate("Pleural Effusion")                              # carried / stated (smoothed)
    c.usual(0.5)                                            # observations carried at least half the time
    c.save(adapter_dir)                                     # <adapter>/carry_rates.json (counts only, no text)
    CarryRates.for_adapter(adapter_dir, table)              # the adapter's file, else the table's train split
    c.abnormal(["..."])                                     # P(radiologists state a pathology | Findings)

Per observation of radgpt.model.labeler (No Finding aside): `stated` = train reports whose Findings
state it positively (findings_labels: a fracture its clause calls old, healed or chronic is not
counted), `carried` = those whose reference Impression states it, or a reading of it
(labeler.SUPPORT: Findings consolidation -> Impression pneumonia), positively too. The
rate is (carried + 1) / (stated + 2), so an observation seen a few times is not trusted to 0 or 1.
With them, from the same train reports, the model of radgpt.model.abnormal (does the Impression
state a pathology, given the Findings: the reads_normal flag). Counts and model are a derived
artifact of the train split with their own sha256 `digest`; drafting puts it into the generation
settings (provenance and draft id), like the retrieval corpus digest. The file holds counts, the
model's weights and its n-gram vocabulary (word 1-2-grams that at least abnormal.MIN_DF train
reports share): no report's text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from radgpt.model import abnormal
from radgpt.model.labeler import OBSERVATIONS, POS, label, states
from radgpt.runtime import sha256_bytes, write_json_atomic

log = logging.getLogger(__name__)
FILE = "carry_rates.json"
KIND = "carry-rates-v3"  # v2: readings (SUPPORT) carry, old findings not stated; v3: + abnormal
# observations a review flag can name: every labeler observation except the "No Finding" summary
FINDINGS = tuple(o for o in OBSERVATIONS if o != "No Finding")


def findings_labels(findings: str | None) -> dict[str, str]:
    """The Findings as the carry check reads them: labeler labels where a positive fracture its
    clause calls old (healed, chronic, remote...) is uncertain: stated (a draft that names it adds
    nothing), not a finding radiologists carry (omits_finding, n-best, rerank, the rates)."""
    return label(findings, old_as_uncertain=True)


def positives(labels: dict[str, str]) -> set[str]:
    """Observations a labelled text states positively (No Finding aside)."""
    return {o for o in FINDINGS if labels[o] == POS}


@dataclass(frozen=True)
class CarryRates:
    counts: dict[str, dict[str, int]]  # observation -> {"stated": n, "carried": n}
    source: dict = field(default_factory=dict, compare=False)  # where the counts came from
    model: dict | None = None  # radgpt.model.abnormal's (None: too few train reports to learn it)

    @classmethod
    def fit(
        cls, findings: Iterable[str | None], impressions: Iterable[str | None], source=None
    ) -> CarryRates:
        findings, impressions = list(findings), list(impressions)
        counts = {o: {"stated": 0, "carried": 0} for o in FINDINGS}
        for f, i in zip(findings, impressions, strict=True):
            imp = label(i)
            for o in positives(findings_labels(f)):
                counts[o]["stated"] += 1
                counts[o]["carried"] += states(imp, o, (POS,))
        model = abnormal.fit(findings, impressions)
        return cls(counts, {"reports": len(findings), **(source or {})}, model)

    def rate(self, obs: str) -> float:
        c = self.counts.get(obs, {"stated": 0, "carried": 0})
        return (c["carried"] + 1) / (c["stated"] + 2)

    def rates(self) -> dict[str, float]:
        return {o: round(self.rate(o), 4) for o in self.counts}

    def usual(self, threshold: float) -> frozenset[str]:
        """Observations radiologists usually carry: rate >= threshold."""
        return frozenset(o for o in self.counts if self.rate(o) >= threshold)

    def abnormal(self, findings: list[str | None]) -> list[float | None]:
        """P(the radiologist's Impression states a pathology) per Findings (radgpt.model.abnormal);
        None each when there is no model."""
        if self.model is None:
            return [None] * len(findings)
        return [float(p) for p in abnormal.prob(self.model, findings)]

    def reads_abnormal(self, findings: list[str | None], threshold: float) -> list[bool]:
        """abnormal(findings) >= threshold (draft.abnormal_threshold; 1 = off, as no model)."""
        if threshold >= 1:
            return [False] * len(findings)
        return [p is not None and p >= threshold for p in self.abnormal(findings)]

    @property
    def digest(self) -> str:
        """sha256 over the counts and the model (canonical JSON), 16 hex: what drafting records."""
        blob = json.dumps({"kind": KIND, "counts": self.counts, "model": self.model},
                          sort_keys=True)  # fmt: skip
        return sha256_bytes(blob.encode())[:16]

    def to_json(self) -> dict:
        return {"kind": KIND, "digest": self.digest, "source": self.source,
                "counts": self.counts, "rates": self.rates(), "model": self.model}  # fmt: skip

    def save(self, d: str | Path) -> Path:
        return write_json_atomic(Path(d) / FILE, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> CarryRates:
        p = Path(path)
        p = p / FILE if p.is_dir() else p
        obj = json.loads(p.read_text())
        if obj.get("kind") != KIND:
            raise ValueError(
                f"{p}: kind {obj.get('kind')!r} is not {KIND} (v1 counted neither readings nor "
                "old findings, v2 has no reads_normal model): refit it with "
                "`radgpt models carry-rates --adapter DIR`"
            )
        c = cls({o: {"stated": int(v["stated"]), "carried": int(v["carried"])}
                 for o, v in obj["counts"].items()}, obj.get("source") or {},
                obj.get("model"))  # fmt: skip
        if c.digest != obj.get("digest"):
            raise ValueError(f"{p}: counts do not match the recorded digest {obj.get('digest')}")
        return c

    @classmethod
    def from_table(cls, root: str | Path) -> CarryRates:
        """Counts over the eligible train split of a canonical reports table."""
        import pyarrow.compute as pc

        from radgpt.table import read_reports

        t = read_reports(Path(root), columns=["split", "eligible", "findings", "impression"])
        t = t.filter(pc.and_(pc.equal(t["split"], "train"), pc.equal(t["eligible"], True)))
        if not len(t):
            raise ValueError(f"no eligible train reports in {root} to learn carry rates from")
        return cls.fit(
            t["findings"].to_pylist(),
            t["impression"].to_pylist(),
            {"table": str(root), "split": "train"},
        )

    @classmethod
    def for_adapter(cls, adapter_dir: str | Path | None, table: str | Path) -> CarryRates:
        """The adapter's carry_rates.json when it ships one, else learned from table's train split."""
        if adapter_dir and (Path(adapter_dir) / FILE).is_file():
            c = cls.load(Path(adapter_dir) / FILE)
        else:
            try:
                c = cls.from_table(table)
            except ValueError:  # no train split: no evidence, every finding counts as carried (0.5)
                log.warning("carry rates: no eligible train reports in %s: all rates 0.5", table)
                c = cls.fit([], [], {"table": str(table), "split": "train"})
            else:
                log.info("carry rates: %d train reports of %s, digest %s", c.source["reports"],
                         table, c.digest)  # fmt: skip
        if c.model is None:
            log.warning("reads_normal is off: no abnormal model (fewer than %d train reports, or "
                        "all of one kind)", abnormal.MIN_REPORTS)  # fmt: skip
        return c
