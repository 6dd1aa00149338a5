"""Procedure -> an intervention (``kind="procedure"``): SNOMED code, performed[x] start/end."""

from __future__ import annotations

from twin.io.fhir.elements import SNOMED, choice_time, pick_coding, subject_key, text
from twin.io.fhir.rows import Mapped

SKIPPED_STATUSES = frozenset({"not-done", "entered-in-error", "preparation"})
NAN = float("nan")


def map_procedure(resource: dict, res: int) -> Mapped:
    """One intervention row; performedDateTime gives start = end, performedPeriod both edges."""
    status = resource.get("status")
    if status in SKIPPED_STATUSES:
        return [], [("status", f"status {status!r}: not performed")]
    system, code, display = pick_coding(resource.get("code"), SNOMED)
    if not code:
        return [], [("no-code", "Procedure.code has no coding")]
    start, end = choice_time(resource, "performed")
    if start and not end and "performedPeriod" not in resource:
        end = start
    row = (
        res,
        subject_key(resource, "subject"),
        code,
        system,
        display,
        "procedure",
        start,
        end,
        NAN,
        "",
        "",
        NAN,
        "",
        text(status),
        NAN,
    )
    return [("intervention", row)], []
