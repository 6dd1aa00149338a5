"""Plain row layouts that workers return (tuples, cheap to pickle; no pydantic objects).

Every row starts with ``res``: the index of its resource in the task's resource list,
so the main process can drop all rows of a duplicate or orphaned resource at once.
Times stay ISO strings until the main process parses them in bulk.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: Columns of each table, by table name.
COLUMNS: dict[str, tuple[str, ...]] = {
    "patient": (
        "res",
        "id",
        "birth_date",
        "sex",
        "deceased",
        "deceased_flag",
        "race",
        "ethnicity",
    ),
    "observation": (
        "res",
        "subject",
        "time",
        "system",
        "code",
        "display",
        "kind",
        "value",
        "unit",
    ),
    "condition": (
        "res",
        "subject",
        "system",
        "code",
        "display",
        "onset",
        "abatement",
        "onset_age_days",
        "abatement_age_days",
        "end_unknown",
    ),
    "intervention": (
        "res",
        "subject",
        "agent",
        "system",
        "display",
        "kind",
        "start",
        "end",
        "dose",
        "unit",
        "route",
        "interval",
        "medication_ref",
        "status",
        "supply_days",
    ),
    "medication": ("res", "key", "system", "code", "display"),
    "reference": (
        "res",
        "subject",
        "resource_type",
        "id",
        "system",
        "code",
        "display",
        "date",
        "details",
    ),
}

#: ``(table, row)`` pairs and ``(category, reason)`` problems returned by each mapping.
Mapped = tuple[list[tuple[str, tuple]], list[tuple[str, str]]]


@dataclass
class TaskResult:
    """What one worker found in one task (a file or an NDJSON chunk)."""

    file: str
    fmt: str
    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    entries: int = 0
    file_error: str | None = None
    seen: Counter = field(default_factory=Counter)
    unused: Counter = field(default_factory=Counter)
    #: one per used, valid resource: (resourceType, id, entry index, fullUrl key)
    resources: list[tuple[str, str, int, str]] = field(default_factory=list)
    rows: dict[str, list[tuple]] = field(default_factory=lambda: {t: [] for t in COLUMNS})
    #: (file, entry, resourceType, id, category, reason)
    skipped: list[tuple[str, int, str, str, str, str]] = field(default_factory=list)
    #: Patients rejected by validation: (id, fullUrl key, entry index)
    rejected_patients: list[tuple[str, str, int]] = field(default_factory=list)
    #: entries used under an assumption, by category (see ``report.NOTE_CATEGORIES``)
    notes: Counter = field(default_factory=Counter)
