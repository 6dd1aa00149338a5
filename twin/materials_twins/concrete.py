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

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from twin.cohort import Cohort
from twin.materials import CONCRETE_AGES, read_concrete, strength_at_ages
from twin.materials_twins.derived import CONCRETE_DERIVED
from twin.materials_twins.property_twin import DEFAULT_SPEC, PropertyTwinModel

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


def concrete_twin(*, increasing: bool | None = None, **kwargs: Any) -> PropertyTwinModel:
    """A :class:`PropertyTwinModel` of ``mix`` → ``strength_at_age`` with the concrete derived inputs.

    Parameters
    ----------
    increasing
        Whether predicted strength never falls with age: the ``strength_at_age``
        decoder gets non-decreasing means across its ages
        (``ModalitySpec(increasing=True)``, :class:`twin.model.increasing.IncreasingMeans`).
        Default: on, unless a ``mean_model`` is given (the latent model then carries
        deviations from the regression, which may fall with age).  Without it the
        per-age decoders learn which mixes happened to be tested late: on held-out
        mixes most predicted curves fell between 100 and 365 days.
    **kwargs
        Passed to :class:`PropertyTwinModel` (``latent_dim``, ``device``, ...).  A
        ``specs["strength_at_age"]`` given here is used as it is.
    """
    if increasing is None:
        increasing = kwargs.get("mean_model") is None
    specs = dict(kwargs.pop("specs", None) or {})
    if increasing and "strength_at_age" not in specs:
        base = kwargs.get("default_spec") or DEFAULT_SPEC
        specs["strength_at_age"] = dataclasses.replace(base, increasing=True)
    return PropertyTwinModel(
        ["mix"], ["strength_at_age"], derived=CONCRETE_DERIVED, specs=specs, **kwargs
    )


def steel_twin(inputs: Sequence[str] = STEEL_INPUTS, **kwargs: Any) -> PropertyTwinModel:
    """A :class:`PropertyTwinModel` of steel composition / processing / inclusions → properties.

    ``kwargs`` go to :class:`PropertyTwinModel`.
    """
    return PropertyTwinModel(list(inputs), ["properties"], **kwargs)
