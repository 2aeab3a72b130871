"""Synthetic chest X-ray reports in every input format the ingest reads (demo data and test fixtures).

findings     phrase builders per finding kind, negations of what is absent
text         cases (findings / impressions, cohort-rule defects) drawn from a seeded generator
base         what the format writers share: seeded streams, exam times, gzip, manifest counts
mimic, openi, csvx, fhir, hl7
             one module per format (as radgpt/ingest/sources/): a record's rendering and the
             format's folder writer write_<fmt>; tests/fixtures_sources.py renders with them too
write        write_sample: every format, the sample folder and its MANIFEST.json
"""
