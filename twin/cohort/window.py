"""Time windows of a cohort's longitudinal observations (history cohorts for forecasting).

Forecast evaluation and sequential updating need the same individuals with fewer
observations: everything before a cut-off time, or only the first ``n`` readings.
These helpers return such cohorts. Hidden entries are set to NaN and masked (as in
:meth:`twin.Cohort.hide`); the visit axis, covariates and interventions are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from twin.cohort.cohort import Cohort

__all__ = ["first_observations", "observations_before", "observations_from"]


def _per_individual(cohort: Cohort, value: float | Sequence | Mapping | pd.Series) -> np.ndarray:
    """A per-individual vector (N,) from a scalar, an aligned array or a mapping by id."""
    if isinstance(value, Mapping | pd.Series):
        s = pd.Series(value, dtype=np.float64)
        s.index = s.index.astype(str)
        return s.reindex(pd.Index(cohort.individuals).astype(str)).to_numpy(dtype=np.float64)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(len(cohort), float(arr))
    if arr.shape != (len(cohort),):
        raise ValueError(f"need one value per individual ({len(cohort)}), got shape {arr.shape}")
    return arr


def _keep_visits(cohort: Cohort, keep: np.ndarray) -> Cohort:
    """Hide every longitudinal entry of the visits where ``keep (N, V)`` is False."""
    ds = cohort.data.copy(deep=False)
    for m in cohort.longitudinal_modalities:
        vals = ds[m].values.copy()
        mask = ds[f"{m}_mask"].values.copy()
        vals[~keep] = np.nan
        mask[~keep] = False
        ds[m] = (ds[m].dims, vals)
        ds[f"{m}_mask"] = (ds[f"{m}_mask"].dims, mask)
    if "visit_mask" in ds:
        ds["visit_mask"] = (ds["visit_mask"].dims, ds["visit_mask"].values & keep)
    return Cohort(ds)


def observations_before(cohort: Cohort, before: float | Sequence | Mapping | pd.Series) -> Cohort:
    """The cohort with every longitudinal observation at ``t >= before`` hidden.

    Parameters
    ----------
    cohort
        Any cohort with longitudinal modalities.
    before
        Cut-off in days since each individual's reference time: a number, one value
        per individual (cohort order) or a mapping / Series by individual id (missing
        ids and NaN: nothing hidden).
    """
    cut = _per_individual(cohort, before)
    t = cohort.times()
    keep = ~(t >= np.where(np.isnan(cut), np.inf, cut)[:, None])
    return _keep_visits(cohort, keep)


def observations_from(cohort: Cohort, start: float | Sequence | Mapping | pd.Series) -> Cohort:
    """The cohort with every longitudinal observation at ``t < start`` hidden."""
    cut = _per_individual(cohort, start)
    t = cohort.times()
    keep = ~(t < np.where(np.isnan(cut), -np.inf, cut)[:, None])
    return _keep_visits(cohort, keep)


def first_observations(cohort: Cohort, n: int, modality: str, feature: str | None = None) -> Cohort:
    """Only each individual's first ``n`` readings of ``modality`` (or of one ``feature``).

    A reading is a distinct observation time with ``feature`` (any feature of the
    modality if None) observed; every longitudinal entry at or after the first
    later reading is hidden, entries of other features at earlier times are kept.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    mask = cohort.mask(modality)
    if feature is not None:
        names = list(cohort.data[f"{modality}_feature"].values)
        if feature not in names:
            raise KeyError(f"modality {modality!r} has no feature {feature!r}")
        seen = mask[:, :, names.index(feature)]
    else:
        seen = mask.any(-1)
    t = np.where(seen, cohort.times(), np.inf)
    ordered = np.sort(t, axis=1)
    # distinct reading times: drop repeats of the same time
    with np.errstate(invalid="ignore"):  # inf - inf between unobserved slots
        distinct = np.where(np.diff(ordered, axis=1, prepend=-np.inf) > 0, ordered, np.inf)
    distinct = np.sort(distinct, axis=1)
    cut = distinct[:, n] if n < distinct.shape[1] else np.full(len(cohort), np.inf)
    return observations_before(cohort, np.where(np.isinf(cut), np.nan, cut))
