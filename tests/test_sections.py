"""Section parser: header variants, wrapped lines, ___ marks, lists, pick policy.

.venv/bin/pytest tests/test_sections.py -q
"""

from __future__ import annotations

from radgpt.ingest import sections as S

MIMIC = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows. The
 cardiomediastinal silhouette is normal.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def test_mimic_report_with_banner_and_wrapped_lines():
    s = S.parse(MIMIC)
    assert "preamble" not in s  # only the FINAL REPORT banner preceded the first header
    assert s["examination"] == "CHEST (PA AND LAT)"
    assert s["indication"] == "___F with new onset ascites // eval for infection"
    assert s["technique"] == "Chest PA and lateral"
    assert s["comparison"] == "None."
    assert s["findings"] == (
        "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular "
        "opacities that most likely represent nipple shadows. The cardiomediastinal silhouette "
        "is normal."
    )
    assert s["impression"] == "No acute cardiopulmonary process."
    assert S.pick(s) == (s["findings"], s["impression"])


def test_wet_read_preamble_and_notification():
    text = (
        "WET READ: ___ ___ 3:45 PM\n  no pneumothorax\n\n FINAL REPORT\n"
        " HISTORY: chest pain.\n FINDINGS: Lungs clear.\n IMPRESSION: Normal.\n"
        " NOTIFICATION: Discussed with Dr. ___ at 4 pm.\n"
    )
    s = S.parse(text)
    assert s["wet_read"] == "___ ___ 3:45 PM no pneumothorax"
    assert s["history"] == "chest pain."
    assert s["impression"] == "Normal."  # NOTIFICATION does not leak into the impression
    assert s["notification"] == "Discussed with Dr. ___ at 4 pm."


def test_text_before_first_header_is_preamble_not_findings():
    s = S.parse("Portable chest radiograph was obtained.\nImpression: No change.")
    assert s == {"preamble": "Portable chest radiograph was obtained.", "impression": "No change."}
    assert S.pick(s) == (None, "No change.")


def test_header_variants_mixed_case_alone_on_line_and_synonyms():
    text = (
        "Clinical History: cough\nReason for exam: fever\nComparison: 1/1/2020\n"
        "Findings\nHeart normal.\nConclusion:\nNo pneumonia.\nRecommendations: CT in 3 months."
    )
    s = S.parse(text)
    assert s == {
        "history": "cough",
        "indication": "fever",
        "comparison": "1/1/2020",
        "findings": "Heart normal.",
        "impression": "No pneumonia.",
        "recommendation": "CT in 3 months.",
    }


def test_summary_is_impression_only_without_impression():
    assert S.parse("FINDINGS: a b c.\nSUMMARY: ok.")["impression"] == "ok."
    s = S.parse("FINDINGS: a b c.\nIMPRESSION: yes.\nSUMMARY: ok.")
    assert s["impression"] == "yes." and s["summary"] == "ok."
    assert S.pick(s)[1] == "yes."


def test_combined_section_fills_neither():
    s = S.parse("FINDINGS AND IMPRESSION: Clear lungs. No acute disease.")
    assert s == {"findings_impression": "Clear lungs. No acute disease."}
    assert S.pick(s) == (None, None)
    assert "findings_impression" in S.parse("Findings/Impression:\nClear.")


def test_inline_header_and_allcaps_subheadings_stay_in_findings():
    s = S.parse("FINDINGS:\nLUNGS: Clear.\nHEART: Normal size. IMPRESSION: Normal chest.")
    assert s["findings"] == "LUNGS: Clear. HEART: Normal size."
    assert s["impression"] == "Normal chest."
    # unknown mixed-case "Label:" lines are text, not headers
    assert S.parse("Findings: Heart size: normal.")["findings"] == "Heart size: normal."


def test_repeated_sections_join_and_empty_sections_drop():
    s = S.parse("FINDINGS:\n\nIMPRESSION: One.\nADDENDUM: Late.\nIMPRESSION: Two.")
    assert "findings" not in s
    assert s["impression"] == "One.\nTwo." and s["addendum"] == "Late."


def test_normalize_lists_and_prose():
    assert S.normalize("  a  b\n c\n\n d ") == "a b c d"
    numbered = "IMPRESSION:\n1. No acute process.\n2. Small left\n   effusion.\n"
    assert S.parse(numbered)["impression"] == "1. No acute process.\n2. Small left effusion."
    assert S.normalize("1. No pneumonia. 2. Stable nodule. 3. ___ tube in place.") == (
        "1. No pneumonia.\n2. Stable nodule.\n3. ___ tube in place."
    )
    assert S.normalize("Compared with\n- chest film\n- CT") == "Compared with\n- chest film\n- CT"
    # a number inside prose is not a list
    assert (
        S.normalize("Nodule of 2. 5 cm in the right lung.")
        == "Nodule of 2. 5 cm in the right lung."
    )
    for t in (numbered, MIMIC, "x\n1. a\nb\n2) c"):
        once = S.normalize(t)
        assert S.normalize(once) == once  # idempotent
    assert S.normalize(None) == "" and S.parse(None) == {}


def test_pick_conclusion_fallbacks_and_word_count():
    assert S.pick({"findings": "a b"}, conclusion="  Normal   study. ") == ("a b", "Normal study.")
    assert S.pick({"findings": "a", "conclusion": "c"}, "fhir") == ("a", "c")
    assert S.pick({"impression": "i"}, "fhir") == (None, "i")
    assert S.pick(None) == (None, None)
    assert S.word_count("No  acute\ndisease.") == 3
    assert S.word_count(None) == 0 and S.word_count("") == 0


def test_merge_explicit_sections_win_over_parsed_text():
    m = S.merge("FINDINGS: from text.\nIMPRESSION: from text.", {"IMPRESSION": "given", "x": ""})
    assert m == {"findings": "from text.", "impression": "given"}


def test_edge_cases_of_the_cheap_pre_checks():
    """parse() tests cheap conditions before its regexes (header without ':', banner without
    'report', list marker, '1.' opening a numbered line); these inputs sit on their edges."""
    # a header alone padded past 42 characters; a banner in odd case and spacing (dropped) next to
    # prose that mentions a report (kept); ':' after a long run of Unicode whitespace
    text = (
        "FINDINGS" + " " * 60 + "\nClear lungs. No effusion.\n  Final \t  RePort  \n"
        "Final report pending.\nIMPRESSION\u3000 "
        + "\t" * 40
        + ":\n1) No acute disease. 2) Stable."
    )
    assert S.parse(text) == {
        "findings": "Clear lungs. No effusion. Final report pending.",
        "impression": "1) No acute disease.\n2) Stable.",
    }
    # a known name alone, spaced out past 42 characters, with a trailing '-'
    text = "HISTORY: cough\n   Findings    and     impression   -" + " " * 30 + "\nHeart normal."
    assert S.parse(text) == {"history": "cough", "findings_impression": "Heart normal."}
    # non-ASCII decimal digits are list markers as for re's \d, but not the '1' that opens a run;
    # numbers that do not start at 1 do not split
    text = "FINDINGS: a b c\n\u0661. first\n\u0662. second\n12. twelve 13. thirteen"
    assert S.parse(text) == {
        "findings": "a b c\n\u0661. first\n\u0662. second\n12. twelve 13. thirteen"
    }
