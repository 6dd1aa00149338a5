"""Metrics for imputed or predicted values on held-out data.

Two entry points:

* :func:`imputation_metrics` works on plain arrays (truth, predictive mean, optional
  interval bounds, standard deviations or quantiles) and returns a dict of metrics;
* :func:`evaluate_imputation` reads the output of ``twins.impute()`` (an
  :class:`xarray.Dataset` with ``<m>``, ``<m>_sd``, ``<m>_q05``, ``<m>_q50``,
  ``<m>_q95`` and ``<m>_observed``), aligns it with a truth :class:`~twin.Cohort`
  by individual id and feature name, and scores the entries that were hidden.

Conventions
-----------
The last axis of every array is the feature axis; all other axes (individual, visit)
are pooled as entries.  An entry is scored when the truth is finite and ``mask`` (if
given) is True.  A scored entry whose prediction is not finite is an error, never
silently dropped: dropping it would flatter the metrics.

Variance-weighted R² is ``1 - sum_j SSE_j / sum_j SST_j`` with
``SSE_j = sum_i (y_ij - yhat_ij)^2`` and ``SST_j = sum_i (y_ij - c_j)^2`` summed over the
scored entries of feature ``j``.  The centre ``c_j`` is ``train_mean[j]`` when given (so
that predicting the training mean scores exactly 0, the natural baseline for
imputation) and otherwise the mean of the scored truth of feature ``j`` (the
convention of :func:`sklearn.metrics.r2_score` with ``multioutput="variance_weighted"``
on one test set).  Features with large variance weigh more; the unweighted
``r2_per_feature_mean`` averages the per-feature R² over features with ``SST_j > 0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import ndtr

from twin.cohort import Cohort

__all__ = [
    "crps_from_quantiles",
    "crps_gaussian",
    "evaluate_imputation",
    "hidden_entries",
    "imputation_metrics",
]

_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)


# ---------------------------------------------------------------------- proper scores
def crps_gaussian(truth: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Continuous ranked probability score of a Gaussian predictive, entrywise.

    ``CRPS(N(mu, s^2), y) = s * (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi))`` with
    ``z = (y - mu) / s`` (Gneiting & Raftery 2007); ``s = 0`` gives ``|y - mu|``.
    Lower is better; the unit is that of the data.

    Parameters
    ----------
    truth, mean, sd
        Broadcastable arrays; ``sd`` must be non-negative.

    Returns
    -------
    numpy.ndarray
        The score of each entry.
    """
    y = np.asarray(truth, dtype=float)
    mu = np.asarray(mean, dtype=float)
    s = np.asarray(sd, dtype=float)
    if np.any(s < 0):
        raise ValueError("sd must be non-negative")
    safe = np.where(s > 0, s, 1.0)
    z = (y - mu) / safe
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    crps = safe * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * pdf - _INV_SQRT_PI)
    return np.where(s > 0, crps, np.abs(y - mu))


def crps_from_quantiles(
    truth: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]
) -> np.ndarray:
    """CRPS approximated from predictive quantiles (mean of twice the pinball loss).

    ``CRPS(F, y) = 2 * integral_0^1 QS_tau(F^-1(tau), y) dtau`` with the pinball loss
    ``QS_tau(q, y) = (1{y < q} - tau) (q - y)``.  Averaging ``2 QS`` over ``levels``
    approximates the integral; it converges to the CRPS as the levels fill (0, 1)
    evenly, and with few levels (e.g. 0.05, 0.5, 0.95) it is a coarser but still proper
    quantile score, comparable between methods scored on the same levels only.

    Parameters
    ----------
    truth
        Observations, shape ``S``.
    quantiles
        Predictive quantiles, shape ``S + (len(levels),)``.
    levels
        Quantile levels in (0, 1).

    Returns
    -------
    numpy.ndarray
        The score of each entry, shape ``S``.
    """
    tau = np.asarray(levels, dtype=float)
    if tau.ndim != 1 or tau.size == 0 or np.any((tau <= 0) | (tau >= 1)):
        raise ValueError("levels must be a non-empty 1-d sequence in (0, 1)")
    q = np.asarray(quantiles, dtype=float)
    y = np.asarray(truth, dtype=float)[..., None]
    if q.shape[-1] != tau.size:
        raise ValueError(
            f"quantiles have {q.shape[-1]} levels on the last axis, expected {tau.size}"
        )
    pinball = ((y < q).astype(float) - tau) * (q - y)
    return 2.0 * pinball.mean(axis=-1)


# ---------------------------------------------------------------------- array metrics
def _as_2d(a: np.ndarray, n_features: int, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim == 0 or a.shape[-1] != n_features:
        raise ValueError(f"{name} must have {n_features} features on its last axis, got {a.shape}")
    return a.reshape(-1, n_features)


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation, or None when either side is constant or has < 2 values."""
    if x.size < 2:
        return None
    dx = x - x.mean()
    dy = y - y.mean()
    sxx = float(dx @ dx)
    syy = float(dy @ dy)
    scale = max(float(np.abs(x).max()), float(np.abs(y).max()), 1e-300)
    # relative tolerance: a feature constant up to rounding has no defined correlation
    if sxx <= (1e-12 * scale) ** 2 * x.size or syy <= (1e-12 * scale) ** 2 * y.size:
        return None
    return float(np.clip((dx @ dy) / math.sqrt(sxx * syy), -1.0, 1.0))


def imputation_metrics(
    truth: np.ndarray,
    mean: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    train_mean: np.ndarray | None = None,
    *,
    sd: np.ndarray | None = None,
    quantiles: Mapping[float, np.ndarray] | None = None,
) -> dict[str, float | int | None]:
    """Accuracy and calibration of imputed values against the truth.

    Parameters
    ----------
    truth
        True values, shape ``(..., n_features)``; NaN entries are not scored.
    mean
        Point prediction (predictive mean), same shape.
    lower, upper
        Optional prediction interval bounds, same shape (e.g. the 5 % and 95 %
        predictive quantiles for a 90 % interval).  Give both or neither.
    mask
        Optional boolean array, same shape: score only entries where it is True
        (e.g. the hidden entries).  Entries where ``truth`` is NaN are skipped anyway.
    train_mean
        Optional per-feature centre ``(n_features,)`` for the total sum of squares of
        R², normally the training-set mean; default: the mean of the scored truth.
        See the module docstring.
    sd
        Optional predictive standard deviation, same shape; adds ``crps_gaussian``.
    quantiles
        Optional ``{level: array}`` of predictive quantiles, each the same shape;
        adds ``crps_quantile`` (see :func:`crps_from_quantiles`).

    Returns
    -------
    dict
        ``n_entries``, ``n_features`` (features with a scored entry),
        ``r2`` (variance-weighted), ``r2_per_feature_mean`` and ``n_features_r2``
        (features with ``SST > 0``), ``pearson_r`` (pooled over all scored entries, so
        it also rewards getting the feature means right), ``pearson_r_per_feature_mean``
        and ``n_features_r`` (features with >= 2 entries and neither truth nor
        prediction constant), ``mae``, ``rmse``; with bounds, ``coverage`` (share of
        scored entries with ``lower <= truth <= upper``) and ``interval_width`` (mean
        ``upper - lower``); with ``sd``/``quantiles``, ``crps_gaussian`` /
        ``crps_quantile`` (mean over entries).  A metric that is undefined (nothing to
        average) is None.

    Raises
    ------
    ValueError
        On shape mismatch, only one bound given, ``lower > upper``, no scored entry,
        or a non-finite prediction on a scored entry.
    """
    truth_arr = np.asarray(truth, dtype=float)
    if truth_arr.ndim == 0:
        raise ValueError("truth must have a feature axis")
    n_feat = truth_arr.shape[-1]
    y = truth_arr.reshape(-1, n_feat)
    mean_arr = np.asarray(mean, dtype=float)
    if mean_arr.shape != truth_arr.shape:
        raise ValueError(f"mean has shape {mean_arr.shape}, truth {truth_arr.shape}")
    yhat = mean_arr.reshape(-1, n_feat)

    scored = np.isfinite(y)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != truth_arr.shape:
            raise ValueError(f"mask has shape {m.shape}, truth {truth_arr.shape}")
        scored &= m.reshape(-1, n_feat)
    n_entries = int(scored.sum())
    if n_entries == 0:
        raise ValueError("no entry to score: truth is all NaN or masked out")
    if not np.isfinite(yhat[scored]).all():
        bad = int((~np.isfinite(yhat[scored])).sum())
        raise ValueError(f"prediction is not finite on {bad} scored entries")

    others = {}
    for name, arr in (("lower", lower), ("upper", upper), ("sd", sd)):
        if arr is not None:
            arr = np.asarray(arr, dtype=float)
            if arr.shape != truth_arr.shape:
                raise ValueError(f"{name} has shape {arr.shape}, truth {truth_arr.shape}")
            others[name] = arr.reshape(-1, n_feat)
    if (lower is None) != (upper is None):
        raise ValueError("give both lower and upper, or neither")

    # ------------------------------------------------------------ R² (per feature sums)
    resid = np.where(scored, y - yhat, 0.0)
    sse = (resid**2).sum(axis=0)
    count = scored.sum(axis=0)
    if train_mean is not None:
        centre = np.asarray(train_mean, dtype=float).reshape(-1)
        if centre.shape != (n_feat,):
            raise ValueError(f"train_mean must have shape ({n_feat},), got {centre.shape}")
        if not np.isfinite(centre[count > 0]).all():
            raise ValueError("train_mean is not finite on a scored feature")
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            centre = np.where(count > 0, np.where(scored, y, 0.0).sum(axis=0) / count, 0.0)
    sst = (np.where(scored, y - centre, 0.0) ** 2).sum(axis=0)
    has = count > 0
    sst_tot = float(sst[has].sum())
    r2 = 1.0 - float(sse[has].sum()) / sst_tot if sst_tot > 0 else None
    # a feature whose truth is constant (up to rounding) has no per-feature R²
    scale = np.maximum(np.nanmax(np.abs(np.where(scored, y, 0.0)), axis=0), 1e-300)
    varies = sst > (1e-12 * scale) ** 2 * np.maximum(count, 1)
    r2_feat = 1.0 - sse[varies] / sst[varies]

    # ------------------------------------------------------------ correlations
    pooled_r = _pearson(y[scored], yhat[scored])
    r_feat = []
    for j in np.nonzero(has)[0]:
        col = scored[:, j]
        r = _pearson(y[col, j], yhat[col, j])
        if r is not None:
            r_feat.append(r)

    err = y[scored] - yhat[scored]
    out: dict[str, float | int | None] = {
        "n_entries": n_entries,
        "n_features": int(has.sum()),
        "r2": r2,
        "r2_per_feature_mean": float(r2_feat.mean()) if r2_feat.size else None,
        "n_features_r2": int(varies.sum()),
        "pearson_r": pooled_r,
        "pearson_r_per_feature_mean": float(np.mean(r_feat)) if r_feat else None,
        "n_features_r": len(r_feat),
        "mae": float(np.abs(err).mean()),
        "rmse": float(math.sqrt((err**2).mean())),
    }

    # ------------------------------------------------------------ intervals
    if "lower" in others:
        lo = others["lower"][scored]
        hi = others["upper"][scored]
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError("interval bounds are not finite on some scored entries")
        if np.any(lo > hi):
            raise ValueError("lower > upper on some scored entries")
        yt = y[scored]
        out["coverage"] = float(((lo <= yt) & (yt <= hi)).mean())
        out["interval_width"] = float((hi - lo).mean())

    # ------------------------------------------------------------ proper scores
    if "sd" in others:
        s = others["sd"][scored]
        if not np.isfinite(s).all():
            raise ValueError("sd is not finite on some scored entries")
        out["crps_gaussian"] = float(crps_gaussian(y[scored], yhat[scored], s).mean())
    if quantiles:
        levels = sorted(float(k) for k in quantiles)
        qs = []
        for lev in levels:
            q = np.asarray(quantiles[lev], dtype=float)
            if q.shape != truth_arr.shape:
                raise ValueError(f"quantile {lev} has shape {q.shape}, truth {truth_arr.shape}")
            qs.append(q.reshape(-1, n_feat)[scored])
        qarr = np.stack(qs, axis=-1)
        if not np.isfinite(qarr).all():
            raise ValueError("quantiles are not finite on some scored entries")
        out["crps_quantile"] = float(crps_from_quantiles(y[scored], qarr, levels).mean())
    return out


# ---------------------------------------------------------------------- cohort + twins
def _quantile_vars(imputed: xr.Dataset, modality: str) -> dict[float, str]:
    """``{level: variable}`` for the ``<m>_qNN`` variables of an imputed dataset."""
    out = {}
    prefix = f"{modality}_q"
    for v in imputed.data_vars:
        name = str(v)
        digits = name[len(prefix) :]
        if name.startswith(prefix) and digits.isdigit():
            out[int(digits) / 10 ** len(digits)] = name
    return out


def _align(
    truth_cohort: Cohort,
    imputed: xr.Dataset,
    modality: str,
    individuals: Sequence[str] | None,
    only_hidden: bool,
):
    """Truth and imputation of one modality on the truth's layout.

    Returns ``(truth_sub, y, mask, pick)``: the truth cohort restricted to the scored
    individuals, its values, the mask of entries to score (observed in the truth and,
    with ``only_hidden``, not given to the twins), and ``pick(var)`` giving a variable
    of ``imputed`` on the same layout.
    """
    if modality not in imputed:
        raise KeyError(f"imputed dataset has no variable {modality!r}")
    fdim = f"{modality}_feature"
    feats = truth_cohort.data[fdim].values
    ids = imputed["individual"].values if individuals is None else np.asarray(individuals)
    ids = np.asarray([str(i) for i in ids], dtype=object)
    missing = np.setdiff1d(ids, imputed["individual"].values.astype(str))
    if missing.size:
        raise KeyError(f"individuals not in the imputed dataset: {missing[:5].tolist()}")
    missing_feats = np.setdiff1d(feats, imputed[fdim].values)
    if missing_feats.size:
        raise KeyError(f"features not in the imputed dataset: {missing_feats[:5].tolist()}")

    truth_sub = truth_cohort.select(list(ids))
    dims = truth_sub.data[modality].dims

    def pick(var: str) -> np.ndarray:
        da = imputed[var].sel(individual=list(ids), **{fdim: feats})
        return da.transpose(*dims).values

    y = truth_sub.values(modality)
    mask = truth_sub.mask(modality).copy()
    if only_hidden and f"{modality}_observed" in imputed:
        obs = imputed[f"{modality}_observed"].sel(individual=list(ids))
        if fdim in obs.dims:
            obs = obs.sel(**{fdim: feats}).transpose(*dims).values.astype(bool)
        else:  # one flag per individual
            obs = np.broadcast_to(
                obs.values.astype(bool).reshape((-1,) + (1,) * (len(dims) - 1)), y.shape
            )
        mask &= ~obs
    return truth_sub, y, mask, pick


def hidden_entries(
    truth_cohort: Cohort,
    imputed: xr.Dataset,
    modality: str,
    individuals: Sequence[str] | None = None,
    *,
    only_hidden: bool = True,
) -> pd.DataFrame:
    """The scored entries of an imputation next to their truth, one row per entry.

    The entries are those :func:`evaluate_imputation` scores (same arguments): observed
    in ``truth_cohort`` and, with ``only_hidden``, not given to the twins.

    Returns
    -------
    pandas.DataFrame
        Columns ``individual``, ``feature``, ``truth``, ``mean`` and every
        ``<m>_sd`` / ``<m>_qNN`` of ``imputed`` without the modality prefix
        (``sd``, ``q05``, ``q50``, ``q95``, ...).
    """
    truth_sub, y, mask, pick = _align(truth_cohort, imputed, modality, individuals, only_hidden)
    if y.ndim != 2:
        raise ValueError(f"{modality!r} is not a static (individual, feature) modality")
    scored = mask & np.isfinite(y)
    rows, cols = np.nonzero(scored)
    out = {
        "individual": truth_sub.individuals[rows],
        "feature": truth_sub.data[f"{modality}_feature"].values[cols],
        "truth": y[rows, cols],
        "mean": pick(modality)[rows, cols],
    }
    extra = [f"{modality}_sd", *_quantile_vars(imputed, modality).values()]
    for var in extra:
        if var in imputed:
            out[var.removeprefix(f"{modality}_")] = pick(var)[rows, cols]
    return pd.DataFrame(out)


def evaluate_imputation(
    truth_cohort: Cohort,
    imputed: xr.Dataset,
    modality: str,
    individuals: Sequence[str] | None = None,
    *,
    train_mean: np.ndarray | Cohort | None = None,
    only_hidden: bool = True,
) -> dict[str, float | int | None]:
    """Score the imputation of one modality against a truth cohort.

    Parameters
    ----------
    truth_cohort
        Cohort holding the true values (individuals may be a superset of the twins).
    imputed
        Output of ``twins.impute()``: ``<m>`` (predictive mean) with dims
        ``(individual, <m>_feature)``; ``<m>_q05`` / ``<m>_q95`` give the 90 %
        interval, ``<m>_sd`` adds a Gaussian CRPS, all ``<m>_qNN`` a quantile CRPS,
        ``<m>_observed`` marks entries the twins were given.
    modality
        The modality to score.
    individuals
        Ids to score; default: every individual of ``imputed``.
    train_mean
        Centre of R²'s total sum of squares: a per-feature array in the feature order
        of ``truth_cohort``, or a training cohort whose observed mean is used; default:
        the mean of the scored truth (see the module docstring).
    only_hidden
        Score only entries that were not given to the twins (``<m>_observed`` False);
        set False to score the reconstruction of observed entries too.

    Returns
    -------
    dict
        The metrics of :func:`imputation_metrics` plus ``n_individuals`` (individuals
        with a scored entry) and ``modality``.
    """
    truth_sub, y, mask, pick = _align(truth_cohort, imputed, modality, individuals, only_hidden)
    feats = truth_sub.data[f"{modality}_feature"].values

    if isinstance(train_mean, Cohort):
        tv = train_mean.values(modality).reshape(-1, len(feats))
        tm = train_mean.mask(modality).reshape(-1, len(feats))
        centre = np.where(tm, tv, 0.0).sum(axis=0) / np.maximum(tm.sum(axis=0), 1)
        centre = np.where(tm.sum(axis=0) > 0, centre, np.nan)
    else:
        centre = train_mean

    lower = pick(f"{modality}_q05") if f"{modality}_q05" in imputed else None
    upper = pick(f"{modality}_q95") if f"{modality}_q95" in imputed else None
    if (lower is None) != (upper is None):
        lower = upper = None
    sd = pick(f"{modality}_sd") if f"{modality}_sd" in imputed else None
    qvars = _quantile_vars(imputed, modality)
    quantiles = {lev: pick(v) for lev, v in qvars.items()} or None

    out = imputation_metrics(
        y, pick(modality), lower, upper, mask=mask, train_mean=centre, sd=sd, quantiles=quantiles
    )
    scored = mask & np.isfinite(y)
    out["n_individuals"] = int(scored.reshape(scored.shape[0], -1).any(axis=1).sum())
    out["modality"] = modality
    return out
