"""Write-back wing: the drafts table, FHIR R4B DiagnosticReport (preliminary) + Provenance.

fhir         drafts table commits and the FHIR NDJSON export
provenance   deterministic draft ids, generation settings, FHIR Provenance
"""
