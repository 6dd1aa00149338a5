"""Observation -> values keyed by code (LOINC preferred), one row per value.

``valueQuantity`` and every component's quantity become numeric rows (so the
blood-pressure panel 85354-9 / 55284-4 yields 8480-6 systolic and 8462-4 diastolic);
``valueCodeableConcept`` and ``valueString`` become categorical rows (the label is
the display text, else the code); ``valueBoolean`` a binary row and ``valueInteger``
a numeric row without unit.  Genomics observations also become a reference row
(see :mod:`twin.io.fhir.references`).  Problems that lose one value (a quantity
without unit, a non-numeric value, an unsupported ``value[x]`` type) are reported
and the other values of the resource are kept.
"""

from __future__ import annotations

import math

from twin.io.fhir.elements import LOINC, choice_time, concept_label, pick_coding, subject_key
from twin.io.fhir.references import genomics_reference, is_genomics
from twin.io.fhir.rows import Mapped
from twin.io.fhir.units import ASSUMED_UNIT, normalise_unit

SKIPPED_STATUSES = frozenset({"entered-in-error", "cancelled"})
_UNSUPPORTED_VALUES = (
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
    "valueAttachment",
    "valueReference",
)


def observation_time(resource: dict) -> str:
    """When the observation applies: effective[x] (start), else ``issued``; '' if unknown."""
    start, _ = choice_time(resource, "effective")
    if start:
        return start
    issued = resource.get("issued")
    return issued if isinstance(issued, str) else ""


_VALUE_KEYS = frozenset(
    {
        "valueQuantity",
        "valueCodeableConcept",
        "valueString",
        "valueBoolean",
        "valueInteger",
        *_UNSUPPORTED_VALUES,
    }
)


def _value(holder: dict, label: str) -> tuple[str, object, str] | tuple[None, str, str]:
    """``(kind, value, unit)`` of a value[x], or ``(None, category, reason)``.

    ``label`` names the value in reasons; ``{label}`` is filled in by the caller.
    """
    if "valueQuantity" in holder:
        q = holder["valueQuantity"]
        value = q.get("value") if isinstance(q, dict) else None
        if value is None:
            return None, "no-value", f"{label}: quantity without a value"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, "impossible-value", f"{label}: value {value!r} is not a number"
        if not math.isfinite(value):
            return None, "impossible-value", f"{label}: value {value!r} is not finite"
        unit = normalise_unit(q.get("code"), q.get("unit"))
        if not unit:
            return None, "missing-unit", f"{label}: quantity {value:g} has no unit"
        return "quantity", float(value), unit
    if "valueCodeableConcept" in holder:
        level = concept_label(holder["valueCodeableConcept"])
        if not level:
            return None, "no-value", f"{label}: coded value without code or text"
        return "coded", level, ""
    if isinstance(holder.get("valueString"), str):
        return "string", holder["valueString"], ""
    if isinstance(holder.get("valueBoolean"), bool):
        return "boolean", 1.0 if holder["valueBoolean"] else 0.0, ""
    if isinstance(holder.get("valueInteger"), int):
        return "integer", float(holder["valueInteger"]), ""
    for key in _UNSUPPORTED_VALUES:
        if key in holder:
            return None, "unsupported-value", f"{label}: {key} is not mapped to a feature"
    return None, "no-value", f"{label}: no value"


def _assumed_unit(holder: dict, code: str) -> str:
    """The unit a unit-less quantity of ``code`` is read in (:data:`ASSUMED_UNIT`), or ''."""
    rule = ASSUMED_UNIT.get(code)
    if rule is None:
        return ""
    unit, low, high = rule
    value = holder["valueQuantity"]["value"]
    return unit if low <= value <= high else ""


def map_observation(resource: dict, res: int) -> Mapped:
    """Rows for each value of one Observation (top-level value and components)."""
    rows: list[tuple[str, tuple]] = []
    problems: list[tuple[str, str]] = []
    subject = subject_key(resource, "subject")
    genomic = is_genomics(resource)
    if genomic:
        rows.append(("reference", genomics_reference(resource, res, subject)))
    status = resource.get("status")
    if status in SKIPPED_STATUSES:
        return rows, [("status", f"status {status!r}: not used as data")]
    time = observation_time(resource)
    if not time:
        return rows, [("no-time", "no effective[x] or issued time")]
    holders = []
    has_value = not _VALUE_KEYS.isdisjoint(resource)
    if has_value or not resource.get("component"):
        holders.append((resource, resource.get("code")))
    for comp in resource.get("component") or ():
        if isinstance(comp, dict):
            holders.append((comp, comp.get("code")))
    for holder, code in holders:
        system, c, display = pick_coding(code, LOINC)
        if not c:
            if not genomic:
                problems.append(("no-code", f"{display or 'observation'}: code has no coding"))
            continue
        if holder is resource and not has_value:
            label = f"{display or 'code'} ({c})"
            if resource.get("dataAbsentReason") is not None:
                reason = concept_label(resource["dataAbsentReason"]) or "data absent"
                problems.append(("no-value", f"{label}: no value ({reason})"))
            elif not genomic and not resource.get("hasMember"):
                problems.append(("no-value", f"{label}: no value"))
            continue
        kind, value, unit = _value(holder, "{label}")
        if kind is None and value == "missing-unit":
            assumed = _assumed_unit(holder, c)
            if assumed:
                kind, value, unit = "quantity", float(holder["valueQuantity"]["value"]), assumed
                label = f"{display or 'code'} ({c})"
                problems.append(("unit-assumed", f"{label}: no unit, read as {assumed}"))
        if kind is None:
            label = f"{display or 'code'} ({c})"
            category, reason = str(value), unit.replace("{label}", label, 1)
            if "dataAbsentReason" in holder and category == "no-value":
                reason = f"{label}: no value ({concept_label(holder['dataAbsentReason'])})"
            problems.append((category, reason))
            continue
        rows.append(("observation", (res, subject, time, system, c, display, kind, value, unit)))
    return rows, problems
