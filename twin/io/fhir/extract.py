"""The worker step: one task (file or NDJSON chunk) -> plain rows, counts and problems.

Entries are dispatched on ``resourceType`` straight after JSON parsing: types twin
does not use are counted and skipped without validation; unknown types (including
R5-only ones) are reported; used types are validated with the R4B models and
mapped to rows.  Runs in worker processes, so it returns only plain Python data.
"""

from __future__ import annotations

from collections.abc import Callable

from twin.io.fhir.condition import map_condition
from twin.io.fhir.elements import ref_key
from twin.io.fhir.medication import (
    map_immunization,
    map_medication,
    map_medication_administration,
    map_medication_request,
    map_medication_statement,
)
from twin.io.fhir.observation import map_observation
from twin.io.fhir.patient import map_patient
from twin.io.fhir.procedure import map_procedure
from twin.io.fhir.references import (
    map_diagnostic_report,
    map_imaging_study,
    map_molecular_sequence,
)
from twin.io.fhir.report import NOTE_CATEGORIES
from twin.io.fhir.rows import Mapped, TaskResult
from twin.io.fhir.sources import Task, read_task
from twin.io.fhir.validate import USED_TYPES, R4BValidator, is_r4b_resource_type

MAPPERS: dict[str, Callable[[dict, int], Mapped]] = {
    "Patient": map_patient,
    "Observation": map_observation,
    "Condition": map_condition,
    "MedicationRequest": map_medication_request,
    "MedicationStatement": map_medication_statement,
    "MedicationAdministration": map_medication_administration,
    "Immunization": map_immunization,
    "Procedure": map_procedure,
    "ImagingStudy": map_imaging_study,
    "MolecularSequence": map_molecular_sequence,
    "DiagnosticReport": map_diagnostic_report,
}


def process_task(task: Task, validation: str = "cached") -> TaskResult:
    """Read, validate and map every entry of one task; never raises on bad data."""
    out = TaskResult(file=task.file, fmt=task.fmt, compressed_bytes=task.compressed_bytes)
    validator = R4BValidator(validation)
    entries, out.uncompressed_bytes, file_error = read_task(task)
    skipped = out.skipped
    for index, item, full_url in entries:
        out.entries += 1
        if isinstance(item, tuple):
            skipped.append((task.file, index, "", "", *item))
            continue
        rtype = item.get("resourceType")
        rid = item.get("id")
        rid = rid if isinstance(rid, str) else ""
        if not isinstance(rtype, str) or not rtype:
            skipped.append((task.file, index, "", rid, "not-a-resource", "no resourceType"))
            continue
        out.seen[rtype] += 1
        if rtype not in USED_TYPES:
            if is_r4b_resource_type(rtype):
                out.unused[rtype] += 1
            else:
                reason = f"unknown resource type {rtype!r} (not in FHIR R4B)"
                skipped.append((task.file, index, rtype, rid, "unknown-resource-type", reason))
            continue
        problem = validator.validate(item)
        if problem:
            skipped.append((task.file, index, rtype, rid, "invalid-resource", problem))
            if rtype == "Patient":
                key = ref_key(full_url) if full_url else ""
                out.rejected_patients.append((rid, key, index))
            continue
        res = len(out.resources)
        out.resources.append((rtype, rid, index, ref_key(full_url) if full_url else ""))
        if rtype == "Medication":
            rows, problems = map_medication(item, res, full_url)
        else:
            rows, problems = MAPPERS[rtype](item, res)
        for table, row in rows:
            out.rows[table].append(row)
        for category, reason in problems:
            if category in NOTE_CATEGORIES:
                out.notes[category] += 1
            else:
                skipped.append((task.file, index, rtype, rid, category, reason))
    if file_error:
        out.file_error = file_error
        where = task.first_line + len(task.lines or ()) if task.fmt == "ndjson" else -1
        skipped.append((task.file, where, "", "", "unreadable-file", file_error))
    return out
