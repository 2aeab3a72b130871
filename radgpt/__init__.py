"""RadGPT: draft radiology impressions locally (Spark ingest, Ray LoRA training and drafting, FHIR write-back)."""

__version__ = "0.1.0"
