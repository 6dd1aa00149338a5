"""twin: probabilistic digital twins of patients and materials."""

from twin.cohort import Cohort, CohortSchema, FeatureSchema, ModalitySchema

__version__ = "0.1.0"

__all__ = ["Cohort", "CohortSchema", "FeatureSchema", "ModalitySchema", "__version__"]
