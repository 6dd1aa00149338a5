"""Small readers for FHIR data types shared by the resource mappings.

They work on plain (already validated) JSON dicts and never raise on odd shapes:
a missing or malformed element reads as empty.
"""

from __future__ import annotations

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"

_SHORT_SYSTEMS = {
    LOINC: "loinc",
    SNOMED: "sct",
    RXNORM: "rxnorm",
    CVX: "cvx",
    "http://hl7.org/fhir/sid/icd-10": "icd10",
    "http://hl7.org/fhir/sid/icd-10-cm": "icd10cm",
    "http://hl7.org/fhir/sid/icd-9-cm": "icd9cm",
}


def codings(concept: object) -> list[dict]:
    """The codings of a CodeableConcept (a Coding alone counts as one)."""
    if not isinstance(concept, dict):
        return []
    if "coding" not in concept and "code" in concept:
        return [concept]
    found = concept.get("coding")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def pick_coding(concept: object, preferred: str = "") -> tuple[str, str, str]:
    """``(system, code, display)`` of a concept, preferring codings from ``preferred``.

    Falls back to the first coding with a code; ``("", "", text)`` when the concept has
    only text; ``("", "", "")`` when it has nothing.
    """
    found = [c for c in codings(concept) if isinstance(c.get("code"), str) and c["code"]]
    chosen = next((c for c in found if c.get("system") == preferred), None) if preferred else None
    chosen = chosen or (found[0] if found else None)
    text = concept.get("text") if isinstance(concept, dict) else None
    if chosen is None:
        return "", "", text if isinstance(text, str) else ""
    display = chosen.get("display")
    if not isinstance(display, str) or not display:
        display = text if isinstance(text, str) else ""
    system = chosen.get("system")
    return (system if isinstance(system, str) else ""), chosen["code"], display


def concept_label(concept: object) -> str:
    """A readable label of a coded value: display, else text, else code."""
    system, code, display = pick_coding(concept)
    return display or code


def feature_name(system: str, code: str, primary: str) -> str:
    """Stable feature name: the bare code in the primary system, else ``short:code``."""
    if system == primary:
        return code
    short = _SHORT_SYSTEMS.get(system)
    if short is None:
        short = system.rstrip("/").rsplit("/", 1)[-1] if system else "local"
    return f"{short}:{code}"


def ref_key(reference: object) -> str:
    """Normalise a reference for lookups: ``urn:uuid:..`` as is, else ``Type/id``.

    Absolute URLs and ``_history`` versions are reduced to ``Type/id``.
    """
    if isinstance(reference, dict):
        reference = reference.get("reference")
    if not isinstance(reference, str) or not reference:
        return ""
    if reference.startswith("urn:"):
        return reference
    parts = [p for p in reference.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


def subject_key(resource: dict, *fields: str) -> str:
    """Normalised reference of the first present field (``subject``, ``patient``, ...)."""
    for f in fields or ("subject",):
        key = ref_key(resource.get(f))
        if key:
            return key
    return ""


def period_edges(period: object) -> tuple[str, str]:
    """``(start, end)`` strings of a Period ('' where absent)."""
    if not isinstance(period, dict):
        return "", ""
    start, end = period.get("start"), period.get("end")
    return (start if isinstance(start, str) else ""), (end if isinstance(end, str) else "")


def choice_time(resource: dict, prefix: str) -> tuple[str, str]:
    """``(start, end)`` of a ``<prefix>[x]`` time: DateTime, Instant, Period or String."""
    for suffix in ("DateTime", "Instant"):
        value = resource.get(prefix + suffix)
        if isinstance(value, str):
            return value, ""
    if isinstance(resource.get(prefix + "Period"), dict):
        return period_edges(resource[prefix + "Period"])
    timing = resource.get(prefix + "Timing")
    if isinstance(timing, dict):
        events = timing.get("event")
        if isinstance(events, list) and events and isinstance(events[0], str):
            return events[0], ""
    return "", ""


def text(value: object) -> str:
    """A string value, or '' for anything else."""
    return value if isinstance(value, str) else ""
