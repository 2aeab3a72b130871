"""Synthetic chest X-ray reports in every input format the ingest reads (demo data and test fixtures).

text         findings / impressions drawn from a seeded generator
write        one writer per format, the sample folder and its manifest
"""
