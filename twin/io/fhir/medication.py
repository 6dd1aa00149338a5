"""MedicationRequest / MedicationStatement / MedicationAdministration / Immunization -> interventions.

One intervention row per resource (``kind="medication"`` or ``"immunization"``):
the drug code (RxNorm preferred; ``medicationReference`` is resolved from
``contained`` or, later, from Medication resources anywhere in the input), start
and end, dose and its unit, route, and the dosing interval in days from
``timing.repeat`` (``period / frequency``), and for a MedicationRequest the days its
dispensed supply lasts (``dispenseRequest.expectedSupplyDuration`` times one plus
``numberOfRepeatsAllowed``), which :mod:`twin.io.fhir.courses` uses to end a stopped
order.  Resources that did not happen (entered-in-error, cancelled, not-done,
not-taken, draft) are skipped and reported.
"""

from __future__ import annotations

from twin.io.fhir.courses import MAX_SUPPLY_DAYS
from twin.io.fhir.elements import (
    CVX,
    RXNORM,
    choice_time,
    concept_label,
    period_edges,
    pick_coding,
    ref_key,
    subject_key,
    text,
)
from twin.io.fhir.rows import Mapped
from twin.io.fhir.units import normalise_unit

SKIPPED_STATUSES = frozenset({"entered-in-error", "cancelled", "not-done", "not-taken", "draft"})
PERIOD_DAYS = {
    "s": 1 / 86400,
    "min": 1 / 1440,
    "h": 1 / 24,
    "d": 1.0,
    "wk": 7.0,
    "mo": 30.4375,
    "a": 365.25,
}
NAN = float("nan")


def dosing_interval(timing: object) -> float:
    """Days between doses from ``Timing.repeat`` (``period`` per ``frequency``); NaN if unknown."""
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    if not isinstance(repeat, dict):
        return NAN
    period, unit = repeat.get("period"), repeat.get("periodUnit")
    frequency = repeat.get("frequency") or 1
    if not isinstance(period, int | float) or unit not in PERIOD_DAYS or frequency <= 0:
        return NAN
    return float(period) * PERIOD_DAYS[unit] / float(frequency)


DURATION_UNITS = {
    **{u: u for u in ("h", "d", "wk", "mo", "a")},
    **{w: "h" for w in ("hour", "hours", "hr", "hrs")},
    **{w: "d" for w in ("day", "days")},
    **{w: "wk" for w in ("week", "weeks", "wks")},
    **{w: "mo" for w in ("month", "months")},
    **{w: "a" for w in ("year", "years", "yr", "yrs")},
}


def supply_days(dispense: object) -> float:
    """Days a MedicationRequest's dispensed supply lasts, repeats included; NaN if unknown.

    ``expectedSupplyDuration`` (a UCUM duration: ``d``, ``wk``, ``mo``, ...) times
    ``1 + numberOfRepeatsAllowed`` (the first fill and its refills).  The unit is
    the UCUM ``code`` or, failing that, the ``unit`` text ("days", "3 months", ...);
    more than ``MAX_SUPPLY_DAYS`` (ten years) is read as unknown.
    """
    if not isinstance(dispense, dict):
        return NAN
    duration = dispense.get("expectedSupplyDuration")
    if not isinstance(duration, dict) or not isinstance(duration.get("value"), int | float):
        return NAN
    unit = duration.get("code")
    if unit not in PERIOD_DAYS:
        unit = DURATION_UNITS.get(str(duration.get("unit", "")).strip().lower())
    if unit not in PERIOD_DAYS or duration["value"] <= 0:
        return NAN
    repeats = dispense.get("numberOfRepeatsAllowed", 0)
    repeats = repeats if isinstance(repeats, int) and repeats >= 0 else 0
    days = float(duration["value"]) * PERIOD_DAYS[unit] * (1 + repeats)
    return days if days <= MAX_SUPPLY_DAYS else NAN


def _quantity(q: object) -> tuple[float, str]:
    if not isinstance(q, dict) or not isinstance(q.get("value"), int | float):
        return NAN, ""
    return float(q["value"]), normalise_unit(q.get("code"), q.get("unit"))


def _dosage(dosage: object) -> tuple[float, str, str, float, str, str]:
    """``(dose, unit, route, interval, bounds start, bounds end)`` of a Dosage."""
    if not isinstance(dosage, dict):
        return NAN, "", "", NAN, "", ""
    dose, unit = _quantity(dosage.get("dose"))  # MedicationAdministration.dosage
    for dr in dosage.get("doseAndRate") or ():
        if isinstance(dr, dict) and "doseQuantity" in dr:
            dose, unit = _quantity(dr["doseQuantity"])
            break
    timing = dosage.get("timing")
    bounds = timing.get("repeat", {}).get("boundsPeriod") if isinstance(timing, dict) else None
    start, end = period_edges(bounds)
    return dose, unit, concept_label(dosage.get("route")), dosing_interval(timing), start, end


def _medication(resource: dict) -> tuple[str, str, str, str]:
    """``(system, code, display, unresolved reference key)`` of medication[x]."""
    if "medicationCodeableConcept" in resource:
        return (*pick_coding(resource["medicationCodeableConcept"], RXNORM), "")
    ref = resource.get("medicationReference")
    reference = text(ref.get("reference")) if isinstance(ref, dict) else ""
    display = text(ref.get("display")) if isinstance(ref, dict) else ""
    if reference.startswith("#"):
        for contained in resource.get("contained") or ():
            if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                system, code, shown = pick_coding(contained.get("code"), RXNORM)
                return system, code, shown or display, ""
        return "", "", display, ""
    return "", "", display, ref_key(reference)


def _row(
    res, resource, subject, med, kind, start, end, dose, unit, route, interval, supply=NAN
) -> tuple:
    system, code, display, med_ref = med
    return (
        res,
        subject,
        code,
        system,
        display,
        kind,
        start,
        end,
        dose,
        unit,
        route,
        interval,
        med_ref,
        text(resource.get("status")),
        supply,
    )


def _check(resource: dict, med: tuple) -> list[tuple[str, str]]:
    status = resource.get("status")
    if status in SKIPPED_STATUSES:
        return [("status", f"status {status!r}: not given")]
    if not med[1] and not med[3]:
        return [("no-code", "medication has no code (and no resolvable reference)")]
    return []


def map_medication_request(resource: dict, res: int) -> Mapped:
    """MedicationRequest: start = authoredOn (else dosage bounds), end = bounds end."""
    med = _medication(resource)
    problems = _check(resource, med)
    if problems:
        return [], problems
    dosage = (resource.get("dosageInstruction") or [None])[0]
    dose, unit, route, interval, b_start, b_end = _dosage(dosage)
    start = text(resource.get("authoredOn")) or b_start
    row = _row(
        res,
        resource,
        subject_key(resource, "subject"),
        med,
        "medication",
        start,
        b_end,
        dose,
        unit,
        route,
        interval,
        supply_days(resource.get("dispenseRequest")),
    )
    return [("intervention", row)], []


def map_medication_statement(resource: dict, res: int) -> Mapped:
    """MedicationStatement: start/end = effective[x] (else dosage bounds)."""
    med = _medication(resource)
    problems = _check(resource, med)
    if problems:
        return [], problems
    dose, unit, route, interval, b_start, b_end = _dosage((resource.get("dosage") or [None])[0])
    start, end = choice_time(resource, "effective")
    start = start or text(resource.get("dateAsserted")) or b_start
    row = _row(
        res,
        resource,
        subject_key(resource, "subject"),
        med,
        "medication",
        start,
        end or b_end,
        dose,
        unit,
        route,
        interval,
    )
    return [("intervention", row)], []


def map_medication_administration(resource: dict, res: int) -> Mapped:
    """MedicationAdministration: start/end = effective[x]; dose and route from ``dosage``."""
    med = _medication(resource)
    problems = _check(resource, med)
    if problems:
        return [], problems
    dose, unit, route, interval, _, _ = _dosage(resource.get("dosage"))
    start, end = choice_time(resource, "effective")
    row = _row(
        res,
        resource,
        subject_key(resource, "subject"),
        med,
        "medication",
        start,
        end or start,
        dose,
        unit,
        route,
        interval,
    )
    return [("intervention", row)], []


def map_immunization(resource: dict, res: int) -> Mapped:
    """Immunization: the vaccine (CVX preferred) at ``occurrence[x]``."""
    med = (*pick_coding(resource.get("vaccineCode"), CVX), "")
    problems = _check(resource, med)
    if problems:
        return [], problems
    start, _ = choice_time(resource, "occurrence")
    dose, unit = _quantity(resource.get("doseQuantity"))
    row = _row(
        res,
        resource,
        subject_key(resource, "patient"),
        med,
        "immunization",
        start,
        start,
        dose,
        unit,
        concept_label(resource.get("route")),
        NAN,
    )
    return [("intervention", row)], []


def map_medication(resource: dict, res: int, full_url: str | None) -> Mapped:
    """A Medication resource is a lookup entry for ``medicationReference`` elsewhere."""
    system, code, display = pick_coding(resource.get("code"), RXNORM)
    rows = []
    keys = {f"Medication/{text(resource.get('id'))}", ref_key(full_url) if full_url else ""}
    for key in sorted(k for k in keys if k and k != "Medication/"):
        rows.append(("medication", (res, key, system, code, display)))
    return rows, []
