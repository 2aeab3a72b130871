"""Closing the loop: what became of each draft, and which adapter drafts next.

Modules: outcomes (a draft's final report -> accepted / edited / replaced, the outcomes table, and
its rates per night, adapter and review flag), promote (the gate: challenger against champion on
held-out reports, then the registry's aliases move or stay), retrain (train on the reports signed
since the champion, from the champion, then the gate). See docs/loop.md.
"""
