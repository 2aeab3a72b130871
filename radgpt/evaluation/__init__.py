"""Evaluation: ROUGE with CIs, CheXpert-style finding agreement, lengths, baselines, report.

    radgpt evaluate --drafts var/drafts --data var/table --split test \
        --baselines constant,nn,zero-shot --out var/eval/latest

Modules: rouge (rouge-score + bootstrap), baselines (constant / nn / zero-shot), score (pure
scoring of a joined frame), safety (carry and silent misses), run (I/O: read tables, join,
score), report (metrics.json, summary.md, report.html + PNGs). See docs/evaluation.md. The finding
labeler is radgpt.model.labeler (shared with drafting's review flags).
"""
