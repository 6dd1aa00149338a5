"""Empirical calibration of a dynamic model's forecast intervals.

The linear-Gaussian model's predictive is exact *for the model*, but its variances are
fitted to whole trajectories by maximum likelihood, and real records are rarely
Gaussian: a few individuals with large jumps (a diagnosis, a change of regimen) widen
the fitted diffusion and noise for everyone, and the intervals of the typical
individual come out too wide (or, the other way round, too narrow).

:func:`forecast_scale_factors` measures this on individuals the user supplies: for
each feature, every individual with enough readings has its last reading held out and
forecast from the readings before it; the standardised errors
``z = (g(y) - mean) / sd`` (``g`` the feature's transform, so ``z`` is exact for
``log`` features too) give the factor ``c = quantile(|z|, level) / Phi^-1((1 + level)/2)``.
Multiplying the predictive sd of a new measurement by ``c`` makes the central
``level`` interval cover the held-out readings at the nominal rate (split-conformal
scaling of a Gaussian predictive).  Use individuals the model was not fitted on where
there are enough; the model's few population parameters make the training individuals
a usable fallback.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from twin.cohort import Cohort
from twin.cohort.window import observations_before
from twin.model.interval_scale import interval_scale_factor


def held_out_last_readings(
    cohort: Cohort, modality: str, feature: str, min_history: int
) -> pd.DataFrame:
    """Per individual with ``> min_history`` distinct reading times of ``feature``: the
    time ``t`` and value ``y`` of the last reading (columns ``t``, ``y``; cohort order)."""
    long = cohort.to_long(modality)
    d = long[long["feature"] == feature].sort_values(["individual", "t"], kind="stable")
    d = d[np.isfinite(d["value"].to_numpy(dtype=float))]
    counts = d.groupby("individual", sort=False)["t"].nunique()
    keep = counts.index[counts > min_history]
    last = d[d["individual"].isin(keep)].groupby("individual", sort=False).tail(1)
    last = last.set_index("individual")[["t", "value"]].rename(columns={"value": "y"})
    order = [i for i in cohort.individuals if i in last.index]
    return last.loc[order].astype(float)


def forecast_scale_factors(
    model: Any, cohort: Cohort, level: float = 0.9, min_history: int = 2
) -> pd.DataFrame:
    """The factor on each feature's predictive sd that calibrates its forecasts.

    Parameters
    ----------
    model
        A fitted :class:`~twin.model.dynamic_model.DynamicTwinModel` (its current
        factors are ignored while measuring).
    cohort
        Individuals to measure on.
    level
        Central interval level to calibrate.
    min_history
        Readings before the held-out one that an individual needs to take part.

    Returns
    -------
    pandas.DataFrame
        One row per feature: ``n`` (individuals used), ``factor``, ``coverage_before``
        (of the uncalibrated ``level`` interval) and ``coverage_after``.  Features
        with fewer than :data:`~twin.model.interval_scale.MIN_SCORES` usable individuals
        get factor 1.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    z_level = float(norm.ppf(0.5 + level / 2))
    rows = []
    for f, (modality, feature) in enumerate(model.features):
        held = held_out_last_readings(cohort, modality, feature, min_history)
        z = _standardised_errors(model, cohort, held, f) if len(held) else np.array([])
        z = np.abs(z[np.isfinite(z)])
        factor = interval_scale_factor(z / z_level, level, conformal=False)
        rows.append(
            {
                "feature": model.feature_names[f],
                "n": int(z.size),
                "factor": factor,
                "coverage_before": float(np.mean(z <= z_level)) if z.size else np.nan,
                "coverage_after": float(np.mean(z <= z_level * factor)) if z.size else np.nan,
            }
        )
    return pd.DataFrame(rows).set_index("feature")


def _standardised_errors(model: Any, cohort: Cohort, held: pd.DataFrame, f: int) -> np.ndarray:
    """``(g(y) - mean) / sd`` of each held-out reading of feature ``f`` under the model's
    own forecast, on the model's (transformed, standardised) scale, where the forecast is
    Gaussian: its mean and sd follow from the 50 % and 5 / 95 % quantiles."""
    name = model.feature_names[f]
    sub = cohort.select(list(held.index))
    cut = held["t"].to_numpy()
    fc = model.instantiate(observations_before(sub, cut)).forecast(  # readings that exist:
        cut[:, None], quantiles=(0.05, 0.5, 0.95), calibrated=False, after_death="keep"
    )  # never cut by a death (an undated one would cut at the shortened record's end)

    def encoded(values: np.ndarray) -> np.ndarray:
        grid = np.full((len(values), len(model.feature_names)), np.nan)
        grid[:, f] = values
        return model.transform.encode(grid)[:, f]

    q05, q50, q95 = (encoded(fc[f"{name}_{q}"].values[:, 0]) for q in ("q05", "q50", "q95"))
    return (encoded(held["y"].to_numpy()) - q50) / ((q95 - q05) / (2 * norm.ppf(0.95)))
