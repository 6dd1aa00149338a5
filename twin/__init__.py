"""twin: probabilistic digital twins of patients and materials.

Main entry points::

    import twin
    cohort = twin.read_fhir("bundles/")              # or twin.Cohort.from_tables({...})
    model = twin.TwinModel(cohort.schema, latent_dim=16)
    model.fit(cohort, seed=0)
    twins = model.instantiate(cohort)
    ds = twins.impute()

Heavy dependencies (torch, Pyro, fhir.resources) load on first use of the names that
need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from twin.cohort import Cohort, CohortSchema, FeatureSchema, ModalitySchema

__version__ = "0.1.0"

_LAZY = {
    "read_fhir": "twin.io",
    "TwinModel": "twin.model",
    "TwinEnsemble": "twin.model",
    "EnsembleTwins": "twin.ensemble_twins",
    "ModalitySpec": "twin.model",
    "TrainingConfig": "twin.model",
    "Twins": "twin.twins",
    "Scenario": "twin.scenario",
    "Intervention": "twin.scenario",
    "ScenarioError": "twin.scenario",
    "read_table_cohort": "twin.io.tables",
    "read_lesion_trials": "twin.io.tumor_growth",
    "read_concrete": "twin.materials",
    "read_nims": "twin.materials",
    "ProcessGraph": "twin.materials",
    "PropertyTwinModel": "twin.materials_twins",
    "DynamicTwinModel": "twin.model.dynamic_model",
    "DynamicTwins": "twin.dynamic_twins",
}

if TYPE_CHECKING:  # pragma: no cover
    from twin.dynamic_twins import DynamicTwins
    from twin.ensemble_twins import EnsembleTwins
    from twin.io import read_fhir
    from twin.io.tables import read_table_cohort
    from twin.io.tumor_growth import read_lesion_trials
    from twin.materials import ProcessGraph, read_concrete, read_nims
    from twin.materials_twins import PropertyTwinModel
    from twin.model import ModalitySpec, TrainingConfig, TwinEnsemble, TwinModel
    from twin.model.dynamic_model import DynamicTwinModel
    from twin.scenario import Intervention, Scenario, ScenarioError
    from twin.twins import Twins


#: Sub-packages reachable as ``twin.<name>`` after a plain ``import twin`` (loaded on use).
_SUBMODULES = (
    "cohort",
    "datasets",
    "evaluate",
    "export",
    "io",
    "materials",
    "materials_twins",
    "model",
    "plot",
    "scenario",
    "simulation",
)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"twin.{name}")
    raise AttributeError(f"module 'twin' has no attribute {name!r}")


def __dir__() -> list[str]:
    public = [n for n in globals() if not n.startswith("_") and n not in _HIDDEN]
    return sorted({*public, *_LAZY, *_SUBMODULES, "__version__"})


_HIDDEN = {"annotations", "importlib", "TYPE_CHECKING"}


__all__ = [
    "Cohort",
    "CohortSchema",
    "DynamicTwinModel",
    "DynamicTwins",
    "EnsembleTwins",
    "FeatureSchema",
    "Intervention",
    "ModalitySchema",
    "ModalitySpec",
    "ProcessGraph",
    "PropertyTwinModel",
    "Scenario",
    "ScenarioError",
    "TrainingConfig",
    "TwinEnsemble",
    "TwinModel",
    "Twins",
    "__version__",
    "read_concrete",
    "read_fhir",
    "read_lesion_trials",
    "read_nims",
    "read_table_cohort",
]
