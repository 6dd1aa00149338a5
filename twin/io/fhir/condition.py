"""Condition -> an episode (code, onset, abatement) of a time-varying indicator.

Onset is ``onset[x]`` (dateTime, Period start, or Age converted with the birth date
later), else ``recordedDate`` (the condition is known to be present from then on).
The end is ``abatement[x]``; a condition that is inactive/resolved/in remission
without an abatement date has an *unknown* end (the indicator is unobserved after
onset rather than guessed).  Refuted and entered-in-error conditions are skipped.
"""

from __future__ import annotations

from twin.io.fhir.elements import SNOMED, pick_coding, subject_key, text
from twin.io.fhir.rows import Mapped

ENDED_STATUSES = frozenset({"inactive", "remission", "resolved"})
SKIPPED_VERIFICATION = frozenset({"refuted", "entered-in-error"})
AGE_DAYS = {"a": 365.25, "mo": 30.4375, "wk": 7.0, "d": 1.0, "h": 1 / 24, "min": 1 / 1440}


def age_in_days(age: object) -> float:
    """Days of an Age quantity with a UCUM time unit; NaN if not convertible."""
    if not isinstance(age, dict) or not isinstance(age.get("value"), int | float):
        return float("nan")
    factor = AGE_DAYS.get(text(age.get("code")) or text(age.get("unit")))
    return float(age["value"]) * factor if factor else float("nan")


def _status(concept: object) -> str:
    return pick_coding(concept)[1]


def _edge(resource: dict, prefix: str) -> tuple[str, float]:
    """``(date string, age in days)`` of ``onset[x]`` / ``abatement[x]`` (Period: its start)."""
    if isinstance(resource.get(prefix + "DateTime"), str):
        return resource[prefix + "DateTime"], float("nan")
    period = resource.get(prefix + "Period")
    if isinstance(period, dict):
        value = period.get("start")
        if isinstance(value, str):
            return value, float("nan")
    if prefix + "Age" in resource:
        return "", age_in_days(resource[prefix + "Age"])
    return "", float("nan")


def map_condition(resource: dict, res: int) -> Mapped:
    """One ``condition`` row, or a problem (refuted, no code, no usable onset)."""
    verification = _status(resource.get("verificationStatus"))
    if verification in SKIPPED_VERIFICATION:
        return [], [("status", f"verificationStatus {verification!r}: not used as data")]
    system, code, display = pick_coding(resource.get("code"), SNOMED)
    if not code:
        return [], [("no-code", "Condition.code has no coding")]
    onset, onset_age = _edge(resource, "onset")
    if not onset and onset_age != onset_age:  # NaN: no age either
        onset = text(resource.get("recordedDate"))
    if not onset and onset_age != onset_age:
        return [], [("no-time", f"condition {display or code} ({code}): no usable onset")]
    abatement, abatement_age = _edge(resource, "abatement")
    clinical = _status(resource.get("clinicalStatus"))
    has_end = bool(abatement) or abatement_age == abatement_age
    ended = clinical in ENDED_STATUSES or resource.get("abatementBoolean") is True
    ended = ended or isinstance(resource.get("abatementString"), str)
    row = (
        res,
        subject_key(resource, "subject"),
        system,
        code,
        display,
        onset,
        abatement,
        onset_age,
        abatement_age,
        bool(ended and not has_end),
    )
    return [("condition", row)], []
