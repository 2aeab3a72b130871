"""Drafting wing: reports in the table -> drafted Impressions (Ray Data batch, Ray Serve online).

drafter      the Drafter (what each Ray actor holds): the three stages in one process
stages       Preprocess -> engine (ENGINES) -> Postprocess; draft_row builds every drafts row
flags        review flags on each draft
run          `radgpt draft`: select -> actor pool of Drafters -> drafts table commit
serve        `radgpt serve`: the Drafter behind HTTP
"""
