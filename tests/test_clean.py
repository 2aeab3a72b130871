"""The postprocess cleaning step: stray punctuation and empty sentences out, words untouched.

.venv/bin/pytest tests/test_clean.py -q
"""

import random

import pytest

from radgpt.draft.clean import CLEAN_VERSION, clean
from radgpt.draft.flags import words

CASES = [
    ("Clear lungs. No acute cardiopulmonary abnormality. .",
     "Clear lungs. No acute cardiopulmonary abnormality."),
    ("No acute disease. . . Stable cardiomegaly..", "No acute disease. Stable cardiomegaly."),
    ("No effusion ,", "No effusion."),
    ("No effusion;.", "No effusion."),
    (". No pneumothorax.", "No pneumothorax."),
    ("1. No acute disease.\n2. .", "1. No acute disease."),
    ("1. No acute disease.\n\n  2)  Stable  granuloma .", "1. No acute disease.\n2) Stable granuloma."),
    ("Nodule measures 1.5 cm. Follow-up.", "Nodule measures 1.5 cm. Follow-up."),
    ("XXXX. No acute cardiopulmonary abnormality.", "XXXX. No acute cardiopulmonary abnormality."),
    ("No pneumothorax, effusion, or edema.", "No pneumothorax, effusion, or edema."),
    (" . , ", ""),
    ("", ""),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "want"), CASES)
def test_clean(raw, want):
    assert clean(raw) == want
    assert clean(want) == want


def test_idempotent_and_words_kept_on_random_text():
    rng = random.Random(7)
    alphabet = [
        "no",
        "acute",
        "effusion",
        "1",
        "2",
        ".",
        ". .",
        ",",
        ";",
        ":",
        " ",
        "  ",
        "\n",
        "?",
    ]
    for _ in range(2000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        once = clean(raw)
        assert clean(once) == once, repr(raw)
        assert " ." not in once and ". ." not in once and ".." not in once
        # words survive except list numbers left with nothing after them
        assert [w for w in words(once) if not w.isdigit()] == [
            w for w in words(raw) if not w.isdigit()
        ]


def test_version_is_recorded():
    assert CLEAN_VERSION == "clean-v1"
