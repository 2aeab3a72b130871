"""Drafting wing: reports in the table -> drafted Impressions (Ray Data batch, Ray Serve online).

drafter      the model spec and the Drafter (what each Ray actor holds)
flags        review flags on each draft
run          `radgpt draft`: select -> actor pool of Drafters -> drafts table commit
serve        `radgpt serve`: the Drafter behind HTTP
"""
