"""Drafting wing: reports in the table -> drafted Impressions (Ray Data batch, Ray Serve online).

drafter      the Ray Data callables: Prompter (preprocess) -> Drafter (engine + postprocess)
stages       Preprocess -> engine (ENGINES) -> Postprocess; draft_row builds every drafts row
flags        review flags on each draft
run          `radgpt draft`: select -> Prompter pool -> Drafter pool -> drafts table commit
serve        `radgpt serve`: the Drafter behind HTTP
"""
