"""Readers that turn external data into a :class:`~twin.cohort.Cohort`."""

from twin.io.fhir import FeatureSelection, IngestReport, read_fhir

__all__ = ["FeatureSelection", "IngestReport", "read_fhir"]
