"""The ingestion report: what was read, used, converted and skipped, and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import pandas as pd

ATTR = "twin_ingest_report"

#: Meaning of each skip category (the ``category`` of a :class:`SkippedEntry`).
CATEGORIES: dict[str, str] = {
    "unreadable-file": "file could not be read (I/O error, truncated/corrupt gzip, invalid JSON)",
    "invalid-json": "NDJSON line that is not valid JSON",
    "not-a-resource": "entry without a resource or resourceType",
    "unknown-resource-type": "resourceType not defined by FHIR R4B (e.g. misspelt or R5-only)",
    "invalid-resource": "resource rejected by the fhir.resources R4B model",
    "duplicate-id": "a resource with the same type and id was read before (first kept)",
    "unknown-subject": "subject/patient is not a Patient in the input",
    "no-time": "no usable date/time",
    "no-code": "no code to key the value by",
    "no-value": "observation without a value",
    "missing-unit": "quantity without a unit",
    "impossible-value": "value not a finite number or outside its plausible range",
    "unsupported-value": "value type twin does not map (Range, Ratio, SampledData, ...)",
    "status": "entered in error, cancelled, refuted or not done",
}


#: Entries used under a stated assumption: counted in ``IngestReport.notes``, not skipped.
NOTE_CATEGORIES: dict[str, str] = {
    "unit-assumed": (
        "quantity without a unit read in the only unit its code is reported in, its value "
        "being in that unit's physiological range (blood pressures: mm[Hg])"
    ),
    "end-from-renewal": (
        "medication order without an end, ended where the next order of the same drug "
        "starts (a renewal)"
    ),
    "end-from-renewal-interval": (
        "stopped medication order without an end, the last of its renewals: lasts as long "
        "as the renewal interval before it"
    ),
    "end-assumed": (
        "stopped medication order without an end and never renewed: lasts medication_days "
        "(default 30)"
    ),
}


@dataclass(frozen=True)
class SkippedEntry:
    """One skipped entry (or part of one), with where it came from and why.

    ``entry`` is the index in ``Bundle.entry`` (0 for a single-resource file), the
    line number counted from 0 for NDJSON, and -1 for a problem with the whole file.
    """

    file: str
    entry: int
    resource_type: str
    resource_id: str
    category: str
    reason: str

    @property
    def location(self) -> str:
        """``file``, ``file line N`` (NDJSON, from 1) or ``file entry N``."""
        if self.entry < 0:
            return self.file
        ndjson = self.file.lower().endswith((".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz"))
        return f"{self.file} line {self.entry + 1}" if ndjson else f"{self.file} entry {self.entry}"

    def __str__(self) -> str:
        what = "/".join(x for x in (self.resource_type, self.resource_id) if x)
        return f"{self.location}: {what + ': ' if what else ''}{self.reason} [{self.category}]"


@dataclass
class IngestReport:
    """Counts and problems of one :func:`twin.io.fhir.ingest` run.

    ``skipped_counts`` is complete; ``skipped`` lists the first ``max_details``
    problems in input order (``details_omitted`` counts the rest).
    """

    source: str = ""
    files: int = 0
    files_failed: int = 0
    files_ignored: list[str] = field(default_factory=list)
    entries: int = 0
    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    resources: dict[str, int] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    unused: dict[str, int] = field(default_factory=dict)
    skipped_counts: dict[str, int] = field(default_factory=dict)
    skipped: list[SkippedEntry] = field(default_factory=list)
    #: entries used under an assumption, by :data:`NOTE_CATEGORIES` key
    notes: dict[str, int] = field(default_factory=dict)
    details_omitted: int = 0
    individuals: int = 0
    features: dict[str, list[str]] = field(default_factory=dict)
    dropped_features: dict[str, dict[str, str]] = field(default_factory=dict)
    unit_conversions: list[dict] = field(default_factory=list)
    unit_splits: list[dict] = field(default_factory=list)
    interventions: dict[str, int] = field(default_factory=dict)
    references: dict[str, int] = field(default_factory=dict)
    visits: int = 0
    validation: str = "cached"
    n_jobs: int = 1
    seconds: float = 0.0
    max_details: int = 10_000

    def skip(self, entry: SkippedEntry) -> None:
        """Record one skipped entry."""
        self.skipped_counts[entry.category] = self.skipped_counts.get(entry.category, 0) + 1
        if len(self.skipped) < self.max_details:
            self.skipped.append(entry)
        else:
            self.details_omitted += 1

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped_counts.values())

    def skipped_table(self) -> pd.DataFrame:
        """The listed skipped entries as a table (one row each)."""
        cols = ["file", "entry", "resource_type", "resource_id", "category", "reason"]
        return pd.DataFrame([asdict(s) for s in self.skipped], columns=cols)

    def to_dict(self) -> dict:
        """JSON-ready dict (round-trips through :meth:`from_dict`)."""
        out = asdict(self)
        out["skipped"] = [asdict(s) for s in self.skipped]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> IngestReport:
        data = dict(data)
        data["skipped"] = [SkippedEntry(**s) for s in data.get("skipped", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def summary(self, max_lines: int = 10) -> str:
        """Readable multi-line summary (what ``str(report)`` prints)."""
        mb = self.uncompressed_bytes / 1e6
        lines = [
            f"FHIR ingestion of {self.source or '?'}: {self.files} files "
            f"({self.files_failed} unreadable, {len(self.files_ignored)} ignored), "
            f"{self.entries:,} entries, {mb:,.1f} MB, {self.seconds:.1f} s "
            f"(validation: {self.validation}, jobs: {self.n_jobs})",
            f"  individuals: {self.individuals:,}; visits: {self.visits:,}",
        ]
        if self.resources:
            used = ", ".join(f"{k} {v:,}" for k, v in sorted(self.used.items()))
            lines.append(f"  used (validated R4B): {used or 'none'}")
            unused = ", ".join(f"{k} {v:,}" for k, v in Counter(self.unused).most_common())
            lines.append(f"  skipped, not used (not validated): {unused or 'none'}")
        for modality, names in self.features.items():
            dropped = len(self.dropped_features.get(modality, {}))
            lines.append(f"  {modality}: {len(names)} features kept, {dropped} dropped")
        if self.interventions:
            kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(self.interventions.items()))
            lines.append(f"  interventions: {kinds}")
        if self.references:
            refs = ", ".join(f"{k} {v:,}" for k, v in sorted(self.references.items()))
            lines.append(f"  references: {refs}")
        for conv in self.unit_conversions:
            lines.append(
                f"  converted {conv['count']:,} values of {conv['code']} from {conv['from']} "
                f"to {conv['to']}"
            )
        for split in self.unit_splits:
            lines.append(
                f"  kept apart: {split['count']:,} values of {split['code']} in {split['unit']} "
                f"as feature {split['feature']!r} (not convertible to {split['main_unit']})"
            )
        for category, n in sorted(self.notes.items()):
            lines.append(
                f"  used with an assumption: {n:,} {category} ({NOTE_CATEGORIES[category]})"
            )
        if self.skipped_counts:
            counts = ", ".join(f"{k} {v:,}" for k, v in Counter(self.skipped_counts).most_common())
            lines.append(f"  skipped {self.n_skipped:,}: {counts}")
            for entry in self.skipped[:max_lines]:
                lines.append(f"    {entry}")
            more = self.n_skipped - min(len(self.skipped), max_lines)
            if more > 0:
                lines.append(f"    ... {more:,} more (report.skipped_table())")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
