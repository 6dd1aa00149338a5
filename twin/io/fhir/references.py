"""ImagingStudy, MolecularSequence, DiagnosticReport and genomics Observations as references.

These resources point at data twin does not hold (images, sequences, reports), so
they are kept as a table -- individual, resourceType, id, code, display, date and
resource-specific ``details`` -- stored as the JSON dataset attribute
``twin_fhir_references`` of the cohort; read it back with :func:`references`.
Coded genomics results are *also* ordinary categorical features (see
:mod:`twin.io.fhir.observation`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import pandas as pd

from twin.io.fhir.elements import (
    LOINC,
    choice_time,
    codings,
    concept_label,
    pick_coding,
    subject_key,
    text,
)
from twin.io.fhir.rows import Mapped

if TYPE_CHECKING:
    from twin.cohort import Cohort

ATTR = "twin_fhir_references"

#: LOINC / SNOMED codes of genetic observations (HL7 genomics reporting, clinical genomics).
GENOMICS_CODES = frozenset(
    {
        "55233-1",
        "55232-3",
        "69548-6",
        "48018-6",
        "81247-9",
        "51969-4",
        "69547-8",
        "48004-6",
        "48005-3",
        "81252-9",
        "53037-8",
        "51967-8",
        "62374-4",
        "81290-9",
        "84413-4",
        "79716-7",
        "59041-4",
        "47998-0",
        "48002-0",
        "48019-4",
        "81258-6",
        "363779003",  # SNOMED: genotype determination
    }
)
_MAX_VARIANTS = 20


def is_genomics(resource: dict) -> bool:
    """Whether an Observation reports a genetic finding (code, component, extension, profile)."""
    concepts = [resource.get("code")]
    concepts += [c.get("code") for c in resource.get("component") or () if isinstance(c, dict)]
    codes = {c.get("code") for concept in concepts for c in codings(concept)}
    if not GENOMICS_CODES.isdisjoint(codes):
        return True
    for ext in resource.get("extension") or ():
        if isinstance(ext, dict) and "genetics" in text(ext.get("url")).lower():
            return True
    profiles = (resource.get("meta") or {}).get("profile") or ()
    return any("genetic" in text(p).lower() or "genomic" in text(p).lower() for p in profiles)


def _row(res: int, subject: str, resource: dict, concept: object, date: str, details: dict):
    system, code, display = pick_coding(concept, LOINC)
    details = {k: v for k, v in details.items() if v not in (None, "", [], {})}
    return (
        res,
        subject,
        resource.get("resourceType", ""),
        text(resource.get("id")),
        system,
        code,
        display,
        date,
        orjson.dumps(details).decode(),
    )


def genomics_reference(resource: dict, res: int, subject: str) -> tuple:
    """A reference row for a genomics Observation (value, gene, components, derivedFrom)."""
    details: dict = {"status": resource.get("status")}
    for key in ("valueCodeableConcept", "valueString", "valueQuantity"):
        if key in resource:
            value = resource[key]
            details["value"] = concept_label(value) if key == "valueCodeableConcept" else value
    for ext in resource.get("extension") or ():
        if not isinstance(ext, dict):
            continue
        name = text(ext.get("url")).rsplit("-", 1)[-1].rsplit("/", 1)[-1]
        if "valueCodeableConcept" in ext:
            details[name] = concept_label(ext["valueCodeableConcept"])
        elif isinstance(ext.get("valueString"), str):
            details[name] = ext["valueString"]
    components = {}
    for comp in resource.get("component") or ():
        if not isinstance(comp, dict):
            continue
        _, code, display = pick_coding(comp.get("code"), LOINC)
        for key, val in comp.items():
            if key.startswith("value"):
                label = concept_label(val) if key == "valueCodeableConcept" else val
                components[display or code] = label
    details["components"] = components
    details["derived_from"] = [
        r.get("reference") for r in resource.get("derivedFrom") or () if isinstance(r, dict)
    ]
    date, _ = choice_time(resource, "effective")
    date = date or text(resource.get("issued"))
    return _row(res, subject, resource, resource.get("code"), date, details)


def map_imaging_study(resource: dict, res: int) -> Mapped:
    """Reference row: modality, body sites, series/instance counts, procedure code."""
    series = [s for s in resource.get("series") or () if isinstance(s, dict)]
    modalities = [pick_coding(m)[1] for m in resource.get("modality") or ()]
    modalities += [pick_coding(s.get("modality"))[1] for s in series]
    sites = [concept_label(s.get("bodySite")) for s in series if s.get("bodySite")]
    details = {
        "status": resource.get("status"),
        "modality": sorted({m for m in modalities if m}),
        "body_site": sorted({s for s in sites if s}),
        "number_of_series": resource.get("numberOfSeries", len(series) or None),
        "number_of_instances": resource.get("numberOfInstances"),
        "description": resource.get("description"),
        "series": [text(s.get("description")) for s in series if s.get("description")],
        "identifier": [
            i.get("value") for i in resource.get("identifier") or () if isinstance(i, dict)
        ],
    }
    procedure = (resource.get("procedureCode") or [None])[0]
    concept = procedure or (series[0].get("modality") if series else None)
    if concept is None and modalities:
        concept = {"code": modalities[0]}
    subject = subject_key(resource, "subject")
    return [
        ("reference", _row(res, subject, resource, concept, text(resource.get("started")), details))
    ], []


def map_molecular_sequence(resource: dict, res: int) -> Mapped:
    """Reference row: sequence type, reference sequence, window, variants, repositories."""
    ref_seq = resource.get("referenceSeq") or {}
    variants = [
        {
            k: v.get(k)
            for k in ("start", "end", "referenceAllele", "observedAllele", "cigar")
            if v.get(k) is not None
        }
        for v in resource.get("variant") or ()
        if isinstance(v, dict)
    ]
    details = {
        "type": resource.get("type"),
        "coordinate_system": resource.get("coordinateSystem"),
        "reference_seq": pick_coding(ref_seq.get("referenceSeqId"))[1],
        "chromosome": concept_label(ref_seq.get("chromosome")),
        "genome_build": ref_seq.get("genomeBuild"),
        "window": [ref_seq.get("windowStart"), ref_seq.get("windowEnd")],
        "variants": variants[:_MAX_VARIANTS],
        "n_variants": len(variants),
        "repository": [
            r.get("url") or r.get("name")
            for r in resource.get("repository") or ()
            if isinstance(r, dict)
        ],
    }
    concept = ref_seq.get("referenceSeqId") or {"text": text(resource.get("type"))}
    subject = subject_key(resource, "patient")
    return [("reference", _row(res, subject, resource, concept, "", details))], []


def map_diagnostic_report(resource: dict, res: int) -> Mapped:
    """Reference row: status, category, conclusion, result references, attachment types."""
    details = {
        "status": resource.get("status"),
        "category": [concept_label(c) for c in resource.get("category") or ()],
        "conclusion": resource.get("conclusion"),
        "conclusion_code": [concept_label(c) for c in resource.get("conclusionCode") or ()],
        "results": [
            r.get("reference") for r in resource.get("result") or () if isinstance(r, dict)
        ],
        "imaging_study": [
            r.get("reference") for r in resource.get("imagingStudy") or () if isinstance(r, dict)
        ],
        "presented_form": [
            f.get("contentType") for f in resource.get("presentedForm") or () if isinstance(f, dict)
        ],
    }
    date, _ = choice_time(resource, "effective")
    date = date or text(resource.get("issued"))
    subject = subject_key(resource, "subject")
    return [("reference", _row(res, subject, resource, resource.get("code"), date, details))], []


def references(cohort: Cohort) -> pd.DataFrame:
    """The references table of an ingested cohort (empty if it has none).

    Columns: individual, resource_type, id, system, code, display, date (datetime),
    details (dict).
    """
    records = cohort.attr_json(ATTR, default=[]) or []
    columns = ["individual", "resource_type", "id", "system", "code", "display", "date", "details"]
    table = pd.DataFrame(records, columns=columns)
    table["date"] = pd.to_datetime(table["date"], utc=True, format="ISO8601", errors="coerce")
    table["date"] = table["date"].dt.tz_localize(None)
    return table


__all__ = [
    "ATTR",
    "GENOMICS_CODES",
    "genomics_reference",
    "is_genomics",
    "map_diagnostic_report",
    "map_imaging_study",
    "map_molecular_sequence",
    "references",
]
