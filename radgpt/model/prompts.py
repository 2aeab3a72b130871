"""Instruction tasks and versioned prompt templates (data files in radgpt/templates/<name>.json).

    from radgpt.model import prompts
    tpl = prompts.get("chat-v1")            # tpl.name, tpl.version
    p = tpl.prompt(tok, "impression", findings, examples=[(f, i), ...])
    t = tpl.target(tok, impression)         # response text incl. EOS
    ids, labels, trunc = prompts.encode(tok, tpl, "impression", findings, impression, cutoff_len=512)

Two kinds: "chat" renders the tokenizer's own chat template (instruct models such as SmolLM2),
"plain" is an Alpaca-style string (base models). A template whose text has `{positives}` gets
the observations the rule labeler finds stated positively in the Findings it formats (the
report's and each example's; "none" when there are none): chat-obs-v1. Training and drafting
build prompts with the same `fit` so that truncation and retrieved examples look identical at
both times.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
DEFAULT = "chat-v1"
IGNORE = -100  # label of tokens that carry no loss (prompt, padding)

# task name -> instruction; new tasks (paper 5.5) are new entries here, not new code
TASKS: dict[str, str] = {
    "impression": "Derive the impression from findings in the radiology report",
    "explain": "Explain the findings of the radiology report in plain language for the patient",
    "recommend": "Recommend next steps based on the findings in the radiology report",
    "differential": "List a differential diagnosis for the findings in the radiology report",
}


def instruction(task: str) -> str:
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    return TASKS[task]


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    kind: str  # "chat" | "plain"
    example: str
    response: str
    user: str = ""  # chat: user turn
    prompt_fmt: str = ""  # plain: whole prompt
    system: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def _examples(self, examples) -> str:
        obs = "{positives}" in self.example  # label the examples only when the text asks
        return "".join(
            self.example.format(n=n, findings=f, impression=i, positives=obs and positives(f))
            for n, (f, i) in enumerate(examples, 1)
        )

    def prompt(self, tokenizer, task: str, findings: str, examples=()) -> str:
        """Everything before the response (chat: up to and incl. the assistant header)."""
        kw = dict(
            instruction=instruction(task), examples=self._examples(examples), findings=findings
        )
        if "{positives}" in self.user + self.prompt_fmt:
            kw["positives"] = positives(findings)
        if self.kind == "plain":
            return self.prompt_fmt.format(**kw)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"template {self.name} needs a tokenizer chat template; this tokenizer has none "
                "(use model.template=alpaca-v1 for base models)"
            )
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs.append({"role": "user", "content": self.user.format(**kw)})
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def target(self, tokenizer, impression: str) -> str:
        return self.response.format(impression=impression) + (tokenizer.eos_token or "")

    def fit(
        self, tokenizer, task: str, findings: str, examples=(), budget: int = 512
    ) -> tuple[list[int], bool]:
        """Prompt token ids of at most `budget` tokens, and whether anything was cut.

        Policy: drop retrieved examples from the last (least similar) first, then cut the tail
        of the Findings. Raises ValueError when even empty Findings do not fit.
        """
        ex = list(examples)
        ids = _ids(tokenizer, self.prompt(tokenizer, task, findings, ex))
        cut = False
        while len(ids) > budget and ex:
            ex.pop()
            cut = True
            ids = _ids(tokenizer, self.prompt(tokenizer, task, findings, ex))
        if len(ids) <= budget:
            return ids, cut
        overhead = len(_ids(tokenizer, self.prompt(tokenizer, task, "", ex)))
        f_ids = _ids(tokenizer, findings)
        keep = budget - overhead
        while keep > 0:  # decode/re-encode can merge tokens differently: shrink until it fits
            ids = _ids(tokenizer, self.prompt(tokenizer, task, tokenizer.decode(f_ids[:keep]), ex))
            if len(ids) <= budget:
                return ids, True
            keep -= max(1, len(ids) - budget)
        raise ValueError(f"prompt overhead of {overhead} tokens exceeds the budget of {budget}")


def positives(findings: str) -> str:
    """The observations stated positively in a text, lower case, in the labeler's order:
    "cardiomegaly, pleural effusion" (or "none")."""
    from radgpt.model.carry import positives as pos
    from radgpt.model.labeler import OBSERVATIONS, label

    got = pos(label(findings))
    return ", ".join(o.lower() for o in OBSERVATIONS if o in got) or "none"


def _ids(tokenizer, text: str) -> list[int]:
    # special tokens are already spelled out in the rendered text (chat) or absent (plain)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode(
    tokenizer,
    tpl: Template,
    task: str,
    findings: str,
    impression: str,
    examples=(),
    cutoff_len: int = 512,
) -> tuple[list[int], list[int], bool] | None:
    """(input_ids, labels, truncated) with labels = IGNORE on the prompt; None if it cannot fit.

    The response is never cut: the prompt gets cutoff_len - len(response) tokens.
    """
    tgt = _ids(tokenizer, tpl.target(tokenizer, impression))
    try:
        p, cut = tpl.fit(tokenizer, task, findings, examples, cutoff_len - len(tgt))
    except ValueError:
        return None
    return p + tgt, [IGNORE] * len(p) + tgt, cut


@functools.cache
def get(name: str = DEFAULT) -> Template:
    p = TEMPLATE_DIR / f"{name}.json"
    if not p.is_file():
        known = sorted(x.stem for x in TEMPLATE_DIR.glob("*.json"))
        raise KeyError(f"no prompt template {name!r} in {TEMPLATE_DIR}; known: {known}")
    d = json.loads(p.read_text())
    return Template(
        name=d["name"],
        version=int(d["version"]),
        kind=d["kind"],
        example=d["example"],
        response=d["response"],
        user=d.get("user", ""),
        prompt_fmt=d.get("prompt", ""),
        system=d.get("system"),
    )
