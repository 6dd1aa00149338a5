"""Materials twins: property prediction with uncertainty, processing scenarios, inverse design.

Sits on top of the population model (:class:`twin.TwinModel`) and the twins layer:

* :class:`PropertyTwinModel`: inputs (composition, processing) → all properties of a
  batch, from inputs alone or with some properties measured, with calibrated
  intervals; vectorised over many candidate settings; optionally on a regression mean
  (:class:`PropertyMean`: any scikit-learn-style regressor, the latent state carrying
  each batch's deviation);
* :func:`sweep`: what-ifs over processing settings (YAML scenarios, grids) →
  ``xarray`` (scenario × property, and the curve over age);
* :func:`inverse_design`: settings that reach a target property with a given
  probability at minimum cost, within bounds;
* :func:`concrete_cohort`, :func:`concrete_twin`, :func:`steel_twin`: ready-made
  set-ups for the two materials data sets;
* :class:`DerivedFeatures` (:data:`CONCRETE_DERIVED`): derived inputs recomputed from
  their components.

See ``docs/materials_twins.md``.
"""

from twin.materials_twins.concrete import STEEL_INPUTS, concrete_cohort, concrete_twin, steel_twin
from twin.materials_twins.curves import interpolate_log_age
from twin.materials_twins.derived import (
    CONCRETE_DERIVED,
    DerivedFeature,
    DerivedFeatures,
    SettingError,
)
from twin.materials_twins.design import (
    DesignResult,
    inverse_design,
    nearest_batches,
    settings_table,
    sweep,
)
from twin.materials_twins.mean_model import PropertyMean
from twin.materials_twins.property_twin import (
    AUTO_REFINE_STEPS,
    DEFAULT_SPEC,
    DEFAULT_TRAINING,
    PropertyTwinModel,
    probability_from_draws,
)

__all__ = [
    "AUTO_REFINE_STEPS",
    "CONCRETE_DERIVED",
    "DEFAULT_SPEC",
    "DEFAULT_TRAINING",
    "STEEL_INPUTS",
    "DerivedFeature",
    "DerivedFeatures",
    "DesignResult",
    "PropertyMean",
    "PropertyTwinModel",
    "SettingError",
    "concrete_cohort",
    "concrete_twin",
    "interpolate_log_age",
    "inverse_design",
    "nearest_batches",
    "probability_from_draws",
    "settings_table",
    "steel_twin",
    "sweep",
]
