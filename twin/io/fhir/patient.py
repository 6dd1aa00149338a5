"""Patient -> individual id and covariates (birth date, sex, deceased, race, ethnicity)."""

from __future__ import annotations

from twin.io.fhir.elements import text
from twin.io.fhir.rows import Mapped

US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"


def us_core_category(resource: dict, url: str) -> str:
    """The text (else the OMB category display) of a US-Core race/ethnicity extension."""
    for ext in resource.get("extension") or ():
        if not isinstance(ext, dict) or ext.get("url") != url:
            continue
        parts = [e for e in ext.get("extension") or () if isinstance(e, dict)]
        for part in parts:
            if part.get("url") == "text" and text(part.get("valueString")):
                return part["valueString"]
        for part in parts:
            coding = part.get("valueCoding")
            if part.get("url") == "ombCategory" and isinstance(coding, dict):
                return text(coding.get("display")) or text(coding.get("code"))
    return ""


def map_patient(resource: dict, res: int) -> Mapped:
    """One ``patient`` row; ``deceased_flag`` is 1.0 when deceasedDateTime or deceasedBoolean."""
    if isinstance(resource.get("deceasedDateTime"), str):
        deceased, flag = resource["deceasedDateTime"], 1.0
    else:
        deceased, flag = "", 1.0 if resource.get("deceasedBoolean") is True else 0.0
    row = (
        res,
        text(resource.get("id")),
        text(resource.get("birthDate")),
        text(resource.get("gender")),
        deceased,
        flag,
        us_core_category(resource, US_CORE_RACE),
        us_core_category(resource, US_CORE_ETHNICITY),
    )
    return [("patient", row)], []
