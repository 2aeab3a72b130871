"""Carry rates learned from a small reports table (real Spark-free table commit), saved and reloaded.

.venv/bin/pytest tests/test_carry.py -q
"""

import json

import pytest

from radgpt.model.carry import FILE, CarryRates

FINDINGS = [
    "Small right pleural effusion. Heart size normal.",
    "Small left pleural effusion. Heart size normal.",
    "Moderate bilateral pleural effusions. Mild cardiomegaly.",
    "Mild cardiomegaly. Lungs are clear.",
    "Old healed left rib fracture. Lungs are clear.",
    "Old healed right rib fractures. Lungs are clear.",
    "Mildly displaced fracture of the right clavicle. Lungs are clear.",
    "Focal consolidation in the right lower lobe.",
    "Lungs are clear. Heart size normal.",
]
IMPRESSIONS = [
    "Small right pleural effusion.",
    "Small left effusion.",
    "Bilateral pleural effusions. Cardiomegaly.",
    "No acute cardiopulmonary abnormality.",
    "No acute disease.",
    "No acute cardiopulmonary abnormality.",
    "Right clavicle fracture.",
    "Right lower lobe pneumonia.",
    "Normal chest.",
]


def test_counts_and_rates_by_hand():
    c = CarryRates.fit(FINDINGS, IMPRESSIONS)
    assert c.counts["Pleural Effusion"] == {"stated": 3, "carried": 3}
    assert c.counts["Cardiomegaly"] == {"stated": 2, "carried": 1}
    # old healed fractures are not findings to carry; the displaced one is, and is carried
    assert c.counts["Fracture"] == {"stated": 1, "carried": 1}
    # "pneumonia" is the radiologist's reading of the consolidation (labeler.SUPPORT): carried
    assert c.counts["Consolidation"] == {"stated": 1, "carried": 1}
    assert c.counts["Pneumothorax"] == {"stated": 0, "carried": 0}
    assert c.rate("Pleural Effusion") == pytest.approx(4 / 5)  # (carried + 1) / (stated + 2)
    assert c.rate("Cardiomegaly") == pytest.approx(2 / 4)
    assert c.rate("Fracture") == pytest.approx(2 / 3)
    assert c.rate("Pneumothorax") == pytest.approx(1 / 2)  # unseen: no evidence either way
    assert c.usual(0.7) == {"Pleural Effusion"}
    assert c.usual(0.5) >= {"Pleural Effusion", "Cardiomegaly", "Pneumothorax"}
    assert "No Finding" not in c.counts and c.source["reports"] == 9


def test_save_load_and_digest(tmp_path):
    c = CarryRates.fit(FINDINGS, IMPRESSIONS)
    p = c.save(tmp_path)
    assert p.name == FILE
    obj = json.loads(p.read_text())
    assert obj["digest"] == c.digest and "Small" not in p.read_text()  # counts only, no text
    back = CarryRates.load(tmp_path)
    assert back == c and back.digest == c.digest
    other = CarryRates.fit(FINDINGS[:-1], IMPRESSIONS[:-1])
    assert other.digest == c.digest  # a normal report adds no counts: same artifact
    assert CarryRates.fit(FINDINGS[1:], IMPRESSIONS[1:]).digest != c.digest
    obj["counts"]["Fracture"]["carried"] = 2
    p.write_text(json.dumps(obj))
    with pytest.raises(ValueError, match="digest"):
        CarryRates.load(p)
    # a file counted the v1 way (no readings, old fractures counted) is refused with the fix
    p.write_text(json.dumps({**obj, "kind": "carry-rates-v1"}))
    with pytest.raises(ValueError, match="refit it with `radgpt models carry-rates"):
        CarryRates.load(p)


def test_from_table_reads_the_eligible_train_split(tmp_path):
    from test_evaluate import PAIRS, SPLITS, report_rows, write_reports

    write_reports(tmp_path / "table", report_rows())
    train = [p for p, sp in zip(PAIRS, SPLITS, strict=True) if sp == "train"]
    c = CarryRates.from_table(tmp_path / "table")
    assert c == CarryRates.fit(*zip(*train, strict=True))
    assert c.source["split"] == "train" and c.source["reports"] == 10
    assert c.counts["Pneumothorax"] == {"stated": 1, "carried": 1}
    # the adapter's own file wins over the table
    d = tmp_path / "adapter"
    CarryRates.fit(FINDINGS, IMPRESSIONS).save(d)
    assert CarryRates.for_adapter(d, tmp_path / "table") == CarryRates.fit(FINDINGS, IMPRESSIONS)
    assert CarryRates.for_adapter(tmp_path / "none", tmp_path / "table") == c


def test_cli_writes_the_adapters_carry_rates(tmp_path, capsys):
    from test_evaluate import report_rows, write_reports

    from radgpt.cli import main

    write_reports(tmp_path / "table", report_rows())
    ad = tmp_path / "adapter"
    assert main(["models", "carry-rates", "--set", f"paths.table={tmp_path / 'table'}",
                 "--adapter", str(ad)]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(ad / FILE) and out["digest"] == CarryRates.load(ad).digest
    assert CarryRates.load(ad) == CarryRates.from_table(tmp_path / "table")
