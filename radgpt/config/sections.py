"""Config sections of the later wings: model registry, outcomes, promotion gate, FHIR write-back,
and the base every section derives from (radgpt.config composes them into Config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConfigError(ValueError):
    """A configuration problem, always naming the offending key."""


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RegistryCfg(_Cfg):
    """The MLflow tracking store and model registry (radgpt.model.registry; docs/loop.md)."""

    uri: str | None = Field(
        default=None,
        description='MLflow tracking/registry URI, e.g. "http://mlflow.radgpt.svc:5000"; null = '
        "the local file store at paths.registry (never a network)",
    )
    experiment: str = Field(
        default="radgpt", description="MLflow experiment that training runs are logged in"
    )
    model: str = Field(default="radgpt-impression", description="registered model name")
    track: bool = Field(
        default=True,
        description="every `radgpt train` logs its run (params, per-step metrics, the adapter "
        "record and the adapter) to MLflow",
    )
    register_versions: bool = Field(
        default=True,
        description="with track: each logged run also becomes a new version of the registered "
        'model, aliased "challenger"',
    )
    champion_drafts: bool = Field(
        default=False,
        description="drafting (draft, nightly, serve) uses the registry's champion when it has "
        "one, else model.adapter",
    )


class OutcomesCfg(_Cfg):
    """When a final report counts and how a draft's fate is classed (radgpt.loop.outcomes)."""

    final_statuses: list[str] = Field(
        default_factory=lambda: ["final", "amended", "corrected", "appended", "F", "C"],
        description="report statuses that mean signed: FHIR DiagnosticReport.status and HL7 OBR-25",
    )
    no_status_is_final: bool = Field(
        default=True,
        description="sources without a status (MIMIC-CXR, OpenI, CSV exports) hold signed reports",
    )
    replaced_at: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="normalized word edit distance from which an edited draft counts as replaced",
    )


class GateCfg(_Cfg):
    """`radgpt promote`: the challenger against the champion on held-out reports."""

    split: str = Field(
        default="test",
        description="split of the held-out reports both models draft (newest version of each "
        "report); test: never trained on by either",
    )
    reports: int | None = Field(
        default=200, ge=1, description="the first N eligible reports by report_id; null = all"
    )
    rouge1_margin: float | None = Field(
        default=None,
        ge=0,
        description="ROUGE-1: refuse when the paired bootstrap CI of (challenger - champion) lies "
        "below 0, or, with a margin, when its lower end is below -margin (non-inferiority)",
    )
    f1_tolerance: float = Field(
        default=0.0,
        ge=0,
        description="the labeler's micro F1 may drop by at most this much (0 = must not drop)",
    )
    bootstrap: int = Field(
        default=1000, ge=10, description="resamples of the paired bootstrap CI of ROUGE-1"
    )
    seed: int = Field(default=7, description="seed of that bootstrap")


class FhirCfg(_Cfg):
    """The FHIR R4 write-back of drafts (radgpt.writeback.fhir; docs/writeback.md)."""

    patient_id_system: str | None = Field(
        default=None,
        pattern=r"^\S+:\S+$",
        description="identifier system (a URI) of the patient ids of the hl7, csv and mimic "
        'sources, e.g. the MRN system "http://hospital.example.org/fhir/sid/mrn": subject = '
        "{identifier: {system, value}}, a logical reference; null = the value alone, which no "
        "server can match (logged)",
    )
    accession_system: str | None = Field(
        default=None,
        pattern=r"^\S+:\S+$",
        description="identifier system of accession numbers whose source names none (HL7 OBR-3 "
        "without a universal id); null = the value alone",
    )
    same_server: bool = Field(
        default=False,
        description="true when the NDJSON is loaded into the FHIR server the fhir-source reports "
        "came from: their Patient and ImagingStudy ids resolve there (subject = Patient/<id>); "
        "false: those ids name nothing on the target, so their subject is stated unknown "
        "(data-absent-reason)",
    )
    us_core: bool = Field(
        default=True,
        description="meta.profile = US Core DiagnosticReport Note on drafts that meet its "
        "must-haves (a patient and an exam time); false: no profile claimed (a server without "
        "the US Core package)",
    )
    signer: str | None = Field(
        default=None,
        pattern=r"^(Organization|Practitioner|PractitionerRole|Device)/[A-Za-z0-9.\-]{1,64}$",
        description="literal reference to whoever vouches for the drafts' provenance, e.g. "
        '"Organization/radiology-ai": Provenance.signature (type source, who, when; no '
        "cryptographic data); null = no signature",
    )
