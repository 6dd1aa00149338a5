"""FHIR R4 ingestion: bundles, single resources and bulk-export NDJSON -> a Cohort.

See ``docs/fhir.md`` for how resources map onto the cohort.

>>> import twin
>>> cohort, report = twin.io.fhir.ingest("synthea_r4/", n_jobs=-1)  # doctest: +SKIP
>>> print(report)  # doctest: +SKIP
"""

from twin.io.fhir.features import FeatureSelection
from twin.io.fhir.reader import FHIRIngestError, ingest, read_fhir
from twin.io.fhir.references import references
from twin.io.fhir.report import IngestReport, SkippedEntry

__all__ = [
    "FHIRIngestError",
    "FeatureSelection",
    "IngestReport",
    "SkippedEntry",
    "ingest",
    "read_fhir",
    "references",
]
