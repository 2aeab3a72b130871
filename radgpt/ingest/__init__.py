"""Ingest wing: report exports -> the canonical Parquet table (Spark).

sources/     one reader per input format (detect / units / read; readers yield Bad, never raise)
sections     free text -> Findings / Impression / ... sections
rows         raw reports -> canonical rows + quarantine rows; the paper's exclusion rules
cohort       rules across rows: incremental dedup, splits, duplicate pairs (pure transform)
executor     the Spark executor side: parse tasks, Arrow work files, Parquet writes
counts       the run's counts per input and in total, and the checks that they add up
ledger       the input ledger in the manifests: inputs committed unchanged are skipped unparsed
plan         work units into a file indexed by partition; partition counts from bytes and cores
run          the driver: skip unchanged inputs, plan units, run the two Spark jobs, reconcile
             counts, commit (the ledger with the manifest)
"""
