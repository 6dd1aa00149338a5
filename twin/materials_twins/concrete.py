"""Ready-made property twins of the two materials data sets of twin.

* :func:`concrete_cohort` / :func:`concrete_twin`: UCI concrete mixes, inputs ``mix``
  (seven components and the derived binder and water ratios), outputs
  ``strength_at_age`` (compressive strength at the canonical test ages,
  :func:`twin.materials.strength_at_ages`).
* :func:`steel_twin`: NIMS steels, inputs ``composition``, ``processing``,
  ``inclusions``, output ``properties`` (fatigue, tensile, fracture strength,
  hardness).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from twin.cohort import Cohort
from twin.materials import CONCRETE_AGES, read_concrete, strength_at_ages
from twin.materials_twins.derived import CONCRETE_DERIVED
from twin.materials_twins.property_twin import PropertyTwinModel

__all__ = ["STEEL_INPUTS", "concrete_cohort", "concrete_twin", "steel_twin"]

#: Input modalities of the steel twin (everything upstream of the properties).
STEEL_INPUTS = ("composition", "processing", "inclusions")


def concrete_cohort(
    path: str | os.PathLike | None = None,
    *,
    ages: Sequence[float] = CONCRETE_AGES,
    duplicates: str = "skip",
) -> Cohort:
    """The concrete table as a cohort with ``strength_at_age`` added.

    Parameters
    ----------
    path
        CSV of the concrete table; default the demo copy shipped with twin
        (:func:`twin.datasets.concrete_csv_path`).
    ages
        Canonical ages of ``strength_at_age`` (see :func:`twin.materials.strength_at_ages`).
    duplicates
        Passed to :func:`twin.materials.read_concrete`.
    """
    if path is None:
        from twin.datasets import concrete_csv_path

        path = concrete_csv_path()
    return strength_at_ages(read_concrete(path, duplicates=duplicates), ages)


def concrete_twin(**kwargs: Any) -> PropertyTwinModel:
    """A :class:`PropertyTwinModel` of ``mix`` → ``strength_at_age`` with the concrete derived inputs.

    ``kwargs`` go to :class:`PropertyTwinModel` (``latent_dim``, ``device``, ...).
    """
    return PropertyTwinModel(["mix"], ["strength_at_age"], derived=CONCRETE_DERIVED, **kwargs)


def steel_twin(inputs: Sequence[str] = STEEL_INPUTS, **kwargs: Any) -> PropertyTwinModel:
    """A :class:`PropertyTwinModel` of steel composition / processing / inclusions → properties.

    ``kwargs`` go to :class:`PropertyTwinModel`.
    """
    return PropertyTwinModel(list(inputs), ["properties"], **kwargs)
