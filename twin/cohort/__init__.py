"""The Cohort data model: labelled multimodal, longitudinal data with masks."""

from twin.cohort.build import INTERVENTION_COLUMNS
from twin.cohort.cohort import Cohort
from twin.cohort.schema import CohortSchema, FeatureSchema, ModalitySchema

__all__ = ["INTERVENTION_COLUMNS", "Cohort", "CohortSchema", "FeatureSchema", "ModalitySchema"]
