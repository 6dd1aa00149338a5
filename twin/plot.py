"""Plots of twins: longitudinal observations, forecasts and uncertainty bands per scenario,
and imputed values against held-out truth."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from twin.cohort import Cohort
    from twin.dynamic_twins import DynamicTwins

__all__ = ["plot_imputed", "plot_simulation", "plot_twin"]


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(7, 4))
    return ax


def _band_quantiles(level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    return (1 - level) / 2, (1 + level) / 2


def plot_twin(
    twins: DynamicTwins,
    individual: Any,
    feature: str,
    *,
    scenarios: Any = None,
    result: xr.Dataset | None = None,
    horizon: float | None = None,
    n_points: int = 100,
    n_draws: int = 200,
    seed: int = 0,
    level: float = 0.9,
    dates: bool | None = None,
    ax: Axes | None = None,
) -> Axes:
    """One twin's observations, its forecast (or scenario simulations) and bands.

    Without ``scenarios``/``result``: the posterior predictive from the first
    observation to ``horizon`` days after the current time (smoothed over the
    record, forecast beyond it), median line and a ``level`` band. With
    ``scenarios`` (simulated here) or a ``result`` of :func:`twin.simulation.simulate_twins`:
    one median line and band per scenario.

    Parameters
    ----------
    twins
        :class:`~twin.dynamic_twins.DynamicTwins`.
    individual
        Id or position of the twin.
    feature
        Modelled feature name.
    horizon
        Days of forecast after the current time (default: a quarter of the
        observed span, at least 30 days).
    level
        Credible level of the bands.
    dates
        Calendar dates on the x axis (default: when the twin has a calendar, e.g.
        read from FHIR); ``False``: days since the individual's reference time.

    Returns
    -------
    matplotlib.axes.Axes
        Observations are a scatter (a ``PathCollection``), each band a
        ``fill_between`` (``PolyCollection``), medians are lines.  The y label is the
        feature's display name (e.g. the LOINC display of a FHIR code) and unit; a
        recorded death is marked by a vertical line.
    """
    if feature not in twins.feature_names:
        raise KeyError(f"{feature!r} is not a modelled feature: {twins.feature_names}")
    one = twins[[individual]] if not isinstance(individual, list) else twins[individual]
    if len(one) != 1:
        raise ValueError("plot_twin draws one individual")
    ax = _axes(ax)
    pid = str(one.individuals[0])
    info = twins.model.feature_schemas[feature]
    unit, display = info.unit, info.display
    x = _TimeAxis(one.reference_time[0], dates)
    obs = one.observations()
    obs = obs[obs["feature"] == feature]
    lo_q, hi_q = _band_quantiles(level)
    if scenarios is not None and result is None:
        result = one.simulate(scenarios, n_draws=n_draws, seed=seed, progress=False)
    death = float(one.death_cutoff[0])
    if result is None:
        start = float(one.prior_time[0])
        now = float(one.time[0])
        span = max(now - start, 1.0)
        horizon = horizon if horizon is not None else max(span / 4, 30.0)
        end = now + horizon if not np.isfinite(death) else min(now + horizon, death)
        times = np.linspace(start, max(end, now), n_points)
        fc = one.forecast(times, quantiles=(lo_q, 0.5, hi_q))
        from twin.dynamic_twins import quantile_name

        lo = fc[f"{feature}_{quantile_name(lo_q)}"].values[0]
        hi = fc[f"{feature}_{quantile_name(hi_q)}"].values[0]
        med = fc[f"{feature}_q50"].values[0]
        ax.fill_between(x(times), lo, hi, alpha=0.25, label=f"{level:.0%} predictive band")
        ax.plot(x(times), med, label="median")
        ax.axvline(x(now), color="grey", linestyle=":", linewidth=1, label="current time")
    else:
        plot_simulation(result, pid, feature, level=level, ax=ax, x=x)
    if np.isfinite(death):
        undated = bool(np.isneginf(one.death_time[0]))
        label = "deceased (date unknown)" if undated else "death"
        ax.axvline(x(death), color="black", linestyle="--", linewidth=1, label=label)
    ax.scatter(
        x(obs["t"].to_numpy()), obs["value"], color="black", s=14, zorder=3, label="observed"
    )
    ax.set_xlabel(x.label)
    name = display or feature
    ax.set_ylabel(f"{name} [{unit}]" if unit else name)
    ax.set_title(pid if name == feature else f"{pid}: {feature}")
    ax.legend(loc="best", fontsize="small")
    return ax


class _TimeAxis:
    """Days since an individual's reference time, drawn as days or as calendar dates."""

    def __init__(self, reference: Any, dates: bool | None) -> None:
        ref = np.datetime64(reference, "ns")
        has_calendar = not np.isnat(ref)
        if dates and not has_calendar:
            raise ValueError("dates=True needs a twin with a calendar (a reference date)")
        self.reference = ref if (has_calendar and dates is not False) else None
        self.label = "date" if self.reference is not None else "days since reference"

    def __call__(self, days: Any) -> Any:
        if self.reference is None:
            return days
        offset = (np.asarray(days, dtype=float) * 86400e9).round().astype("timedelta64[ns]")
        moved = self.reference + offset
        return moved if offset.ndim else pd.Timestamp(moved)


def plot_simulation(
    result: xr.Dataset,
    individual: Any,
    feature: str,
    *,
    scenarios: Sequence[str] | None = None,
    level: float = 0.9,
    ax: Axes | None = None,
    x: Any = None,
) -> Axes:
    """Median and ``level`` band of each scenario of a simulation, for one individual.

    ``x`` maps days since reference to the x axis (``plot_twin`` passes its calendar
    axis); by default days are drawn as they are.
    """
    ax = _axes(ax)
    lo_q, hi_q = _band_quantiles(level)
    sel = result.sel(individual=individual, feature=feature)
    t = sel["t"].values if x is None else x(sel["t"].values)
    names = list(scenarios) if scenarios is not None else list(result["scenario"].values)
    for name in names:
        draws = sel["value"].sel(scenario=name)
        q = draws.quantile([lo_q, 0.5, hi_q], dim="draw").values
        ax.fill_between(t, q[0], q[2], alpha=0.2)
        ax.plot(t, q[1], label=f"{name} (median, {level:.0%} band)")
    ax.set_xlabel(getattr(x, "label", "days since reference"))
    ax.set_ylabel(feature)
    return ax


def plot_imputed(
    imputed: xr.Dataset,
    truth: Cohort,
    modality: str,
    *,
    individuals: Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    level: float = 0.9,
    ax: Axes | None = None,
) -> Axes:
    """Held-out truth against the imputed mean, each entry with its ``level`` interval.

    Every entry the twins were not given and ``truth`` holds (those
    :func:`twin.evaluate.evaluate_imputation` scores) is a point at (truth, predictive
    mean) with a vertical bar from the lower to the upper quantile of the central
    ``level`` interval; bars that miss the truth are drawn in another colour and the
    title gives the coverage.  Points on the diagonal are perfect imputations; a cloud
    flat at the population mean is what imputing without information looks like.

    Parameters
    ----------
    imputed
        Output of ``twins.impute(quantiles=...)`` holding the two quantiles of the
        ``level`` interval (``q05``/``q95`` for the default 0.9).
    truth
        Cohort with the true values.
    modality
        Modality to draw (static: ``(individual, feature)``).
    individuals, features
        Subsets to draw (default: all scored).
    level
        Central interval level.

    Returns
    -------
    matplotlib.axes.Axes
        Covered and missed entries are two ``errorbar`` containers.
    """
    from twin.evaluate import hidden_entries
    from twin.twins import quantile_suffix

    lo_q, hi_q = _band_quantiles(level)
    lo_name, hi_name = quantile_suffix(lo_q), quantile_suffix(hi_q)
    for name in (lo_name, hi_name):
        if f"{modality}_{name}" not in imputed:
            raise KeyError(
                f"imputed has no {modality}_{name}: impute with quantiles including "
                f"{lo_q:g} and {hi_q:g} for a {level:.0%} interval"
            )
    rows = hidden_entries(truth, imputed, modality, individuals)
    if features is not None:
        unknown = sorted(set(features) - set(map(str, imputed[f"{modality}_feature"].values)))
        if unknown:
            raise KeyError(f"{unknown} are not features of {modality!r}")
        rows = rows[rows["feature"].isin(list(features))]
    if rows.empty:
        raise ValueError(f"no hidden entry of {modality!r} with a true value to draw")
    ax = _axes(ax)
    covered = (rows["truth"] >= rows[lo_name]) & (rows["truth"] <= rows[hi_name])
    for sel, colour, label in ((covered, "C0", "covered"), (~covered, "C3", "missed")):
        part = rows[sel]
        err = np.vstack([part["mean"] - part[lo_name], part[hi_name] - part["mean"]])
        ax.errorbar(
            part["truth"],
            part["mean"],
            yerr=err,
            fmt="o",
            ms=3,
            color=colour,
            alpha=0.6,
            elinewidth=0.8,
            label=f"{label} ({len(part)})",
        )
    lo = float(min(rows["truth"].min(), rows[lo_name].min()))
    hi = float(max(rows["truth"].max(), rows[hi_name].max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(f"{modality}: held-out value")
    ax.set_ylabel(f"{modality}: imputed mean and {level:.0%} interval")
    ax.set_title(f"{modality}: {len(rows)} hidden entries, {covered.mean():.0%} covered")
    ax.legend(loc="best", fontsize="small")
    return ax
