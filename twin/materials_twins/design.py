"""Processing scenarios and inverse design with a property twin.

* :func:`sweep`: what-ifs over processing settings (a YAML scenario file, a list of
  :class:`~twin.scenario.Scenario`, a grid or a table of settings) applied to one or
  more base batches; all scenarios are predicted in one batched pass and returned as a
  labelled :class:`xarray.Dataset` (``scenario`` × ``property``, optionally the curve
  over age).
* :func:`inverse_design`: settings that reach target properties with a given
  probability at minimum cost, within bounds, with derived inputs recomputed from
  their components; a cross-entropy search over large batches of candidates (each
  batch one vectorised pass of the twin on its device), a local refinement, and a
  final check of the best candidates with fresh predictive draws (so the reported
  probability is not the search's own, optimistically selected, estimate).  The
  answer comes with the twin's forward prediction for it and the nearest real
  batches of a reference data set with their measured properties.

Settings follow :class:`twin.scenario.Scenario` semantics: ``settings`` override the
base batch's values; a derived input (water/cement ratio) changes the component it
adjusts (see :mod:`twin.materials_twins.derived`); unknown names are refused.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from twin.cohort import Cohort
from twin.materials_twins.derived import SettingError
from twin.materials_twins.property_twin import (
    PropertyTwinModel,
    parse_target,
    probability_from_draws,
)
from twin.scenario import Scenario, load_scenarios
from twin.twins import DEFAULT_QUANTILES

__all__ = ["DesignResult", "inverse_design", "settings_table", "sweep"]

ScenarioSpec = str | os.PathLike | Sequence[Scenario] | Mapping[str, Sequence[float]] | pd.DataFrame


# ---------------------------------------------------------------------- settings
def settings_table(scenarios: ScenarioSpec) -> tuple[pd.DataFrame, list[Scenario] | None]:
    """Scenario settings as a table: one row per scenario (index: name), NaN = not set.

    ``scenarios`` may be a YAML file (:func:`twin.scenario.load_scenarios`), a list of
    :class:`~twin.scenario.Scenario`, a grid ``{setting: [values]}`` (Cartesian product,
    rows named ``"a=1,b=2"``) or a table already in this form.  Also returns the
    scenarios when there were any.
    """
    if isinstance(scenarios, pd.DataFrame):
        table = scenarios.astype(float)
        table.index = [str(i) for i in table.index]
        return table, None
    if isinstance(scenarios, str | os.PathLike):
        scenarios = load_scenarios(Path(scenarios))
    if isinstance(scenarios, Mapping):
        keys = [str(k) for k in scenarios]
        for k, v in scenarios.items():
            if isinstance(v, str) or not isinstance(v, Sequence | np.ndarray) or len(v) == 0:
                raise SettingError(f"grid entry {k!r} must be a non-empty list of values")
        rows = list(itertools.product(*(list(scenarios[k]) for k in keys)))
        names = [",".join(f"{k}={float(v):g}" for k, v in zip(keys, r, strict=True)) for r in rows]
        return pd.DataFrame(rows, index=names, columns=keys, dtype=float), None
    scenarios = list(scenarios)
    if not scenarios or not all(isinstance(s, Scenario) for s in scenarios):
        raise TypeError("scenarios must be a YAML path, Scenario objects, a grid or a DataFrame")
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique: {names}")
    table = pd.DataFrame([s.settings for s in scenarios], index=names, dtype=float)
    return table, scenarios


def _apply(model: PropertyTwinModel, base: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Inputs of every (scenario, base) pair, scenario-major: ``S * B`` rows.

    Scenarios are grouped by which settings they set; each group is applied to all
    bases at once (vectorised over scenarios and bases).
    """
    known = model.input_names
    b = len(base)
    out = np.full((len(table), b, len(known)), np.nan)
    set_mask = table.notna().to_numpy()
    groups: dict[tuple[bool, ...], list[int]] = {}
    for i, row in enumerate(set_mask):
        groups.setdefault(tuple(row), []).append(i)
    base_cols = {c: base[c].to_numpy(dtype=float)[None, :] for c in known}
    for key, rows in groups.items():
        names = [c for c, on in zip(table.columns, key, strict=True) if on]
        try:
            model.derived.check_settings(names, known)
        except SettingError as exc:
            raise SettingError(f"scenario {table.index[rows[0]]!r}: {exc}") from None
        values = {n: table[n].to_numpy(dtype=float)[rows][:, None] for n in names}
        cols = model.derived.apply_settings(base_cols, values, known)
        for j, c in enumerate(known):
            out[rows, :, j] = np.broadcast_to(cols[c], (len(rows), b))
    return pd.DataFrame(out.reshape(len(table) * b, len(known)), columns=known)


def _base_frame(model: PropertyTwinModel, base: Any) -> pd.DataFrame:
    if isinstance(base, Cohort):
        return model.input_frame(base)
    if isinstance(base, pd.Series):
        frame = base.to_frame().T
        frame.index = [str(base.name) if base.name is not None else "base"]
    elif isinstance(base, pd.DataFrame):
        frame = base
    elif isinstance(base, Mapping):
        frame = pd.DataFrame({k: [v] for k, v in base.items()}, index=["base"])
    else:
        raise TypeError("base must be a Cohort, a DataFrame, a Series or a mapping of inputs")
    return model.complete_inputs(frame)


# ---------------------------------------------------------------------- sweep
def sweep(
    model: PropertyTwinModel,
    base: Cohort | pd.DataFrame | pd.Series | Mapping[str, float],
    scenarios: ScenarioSpec,
    *,
    n_draws: int = 500,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    seed: int = 0,
    ages: Sequence[float] | str | None = None,
) -> xr.Dataset:
    """Predict the properties of base batches under each scenario's settings.

    Parameters
    ----------
    model
        A fitted :class:`PropertyTwinModel`.
    base
        The batch(es) the settings modify: a mapping or Series of input values (one
        base), a table with one row per base, or a cohort (its individuals' inputs).
        Inputs a base leaves out are unknown to the twin (imputed from the rest).
    scenarios
        YAML file, scenarios, grid or settings table (see :func:`settings_table`).
    n_draws, quantiles, seed
        Predictive draws, quantile levels and seed (see :meth:`PropertyTwinModel.predict`).
    ages
        Also return the property over these ages (:meth:`PropertyTwinModel.curve`);
        ``"scenario"``: the positive output times of the scenarios (which must agree).

    Returns
    -------
    xarray.Dataset
        ``mean``, ``sd``, ``qNN``, on ``(scenario, property)`` for one base, or
        ``(scenario, base, property)`` for several; ``inputs`` ``(scenario[, base],
        input)`` the inputs used (settings applied, derived inputs recomputed);
        ``settings`` ``(scenario, setting)`` (NaN: not set); with ``ages``,
        ``curve_mean``, ``curve_sd``, ``curve_qNN`` on ``(scenario[, base], age)``.
        How far each setting lies from the data the twin learned from:
        ``outside_range`` ``(scenario[, base], input)``, True where an input is
        outside the training batches' range; ``distance`` ``(scenario[, base])``, the
        standardised distance to the nearest training batch over the base inputs, and
        ``outside_data``, True where it exceeds the 95 % quantile of the training
        batches' own nearest-neighbour distances (the ``max_distance="auto"`` limit of
        :func:`inverse_design`).  Predictions there are extrapolations: a warning
        names those scenarios.

    Raises
    ------
    SettingError
        For an unknown setting name, a derived input that cannot be set or two
        settings changing the same input (naming the scenario).
    """
    model._require_fitted()
    table, scs = settings_table(scenarios)
    bases = _base_frame(model, base)
    single = isinstance(base, pd.Series | Mapping)
    x = _apply(model, bases, table)
    s, b = len(table), len(bases)
    x.index = [f"{sc}|{bs}" for sc in table.index for bs in bases.index]
    pred = model.predict(x, n_draws=n_draws, quantiles=quantiles, seed=seed)
    stats = [v for v in pred.data_vars if v not in ("observed", "inputs")]
    out: dict[str, Any] = {}
    lead = ("scenario",) if single else ("scenario", "base")

    def shaped(arr: np.ndarray) -> np.ndarray:
        arr = arr.reshape(s, b, *arr.shape[1:])
        return arr[:, 0] if single else arr

    for v in stats:
        out[v] = ((*lead, "property"), shaped(pred[v].values))
    out["inputs"] = ((*lead, "input"), shaped(pred["inputs"].values))
    out["settings"] = (("scenario", "setting"), table.to_numpy(dtype=float))
    support = _Support(model, "auto")
    distance = support.distance(x)
    outside_data = distance > support.limit
    outside_range = _outside_range(model, pred["inputs"].to_pandas())
    out["distance"] = (lead, shaped(distance))
    out["outside_data"] = (lead, shaped(outside_data))
    out["outside_range"] = ((*lead, "input"), shaped(outside_range))
    if outside_data.any():
        names = list(table.index[outside_data.reshape(s, b).any(axis=1)])
        warnings.warn(
            f"scenario(s) {names[:5]}{' ...' if len(names) > 5 else ''} set inputs away from "
            "every training batch (standardised distance above "
            f"{support.limit:.2f}): their predictions are extrapolations; see 'distance', "
            "'outside_data' and 'outside_range'",
            stacklevel=2,
        )
    coords: dict[str, Any] = {
        "scenario": ("scenario", np.array(table.index, dtype=object)),
        "property": pred["property"].values,
        "unit": ("property", pred["unit"].values),
        "input": pred["input"].values,
        "setting": ("setting", np.array(table.columns, dtype=object)),
    }
    if not single:
        coords["base"] = ("base", np.array(bases.index.astype(str), dtype=object))
    if isinstance(ages, str):
        if ages != "scenario":
            raise ValueError(f"ages must be a list of days, 'scenario' or None, got {ages!r}")
        if not scs:
            raise ValueError("ages='scenario' needs Scenario objects or a YAML file")
        grids = {tuple(sc.times().tolist()) for sc in scs}
        if len(grids) != 1:
            raise ValueError("the scenarios have different output times; pass ages explicitly")
        ages = [t for t in grids.pop() if t > 0]
    if ages is not None:
        cur = model.curve(x, ages, n_draws=n_draws, quantiles=quantiles, seed=seed)
        for v in cur.data_vars:
            out[f"curve_{v}"] = ((*lead, "age"), shaped(cur[v].values))
        coords["age"] = ("age", cur["age"].values)
        coords["extrapolated"] = ("age", cur["extrapolated"].values)
    attrs = {
        "n_draws": int(n_draws),
        "seed": int(seed),
        "quantiles": [float(q) for q in quantiles],
    }
    if scs:
        attrs["descriptions"] = [sc.description for sc in scs]
    return xr.Dataset(out, coords=coords, attrs=attrs)


# ---------------------------------------------------------------------- inverse design
@dataclass
class DesignResult:
    """Outcome of :func:`inverse_design`.

    Attributes
    ----------
    inputs
        The suggested inputs (all of them; derived ones recomputed), a Series.
    feasible
        Whether the suggestion meets the targets with the required probability on the
        final check with fresh draws.
    probability
        Probability of meeting every target, from ``n_draws_final`` fresh joint draws.
    probability_search
        The search's own estimate for the same candidate (selected, so optimistic).
    cost
        The cost of the suggestion.
    prediction
        :meth:`PropertyTwinModel.predict` for the suggestion (one individual ``design``).
    nearest
        The nearest real batches of ``reference`` (standardised Euclidean distance on
        the base inputs) with their inputs and measured target properties; None without
        a reference.
    history
        Per iteration: best feasible cost, highest probability, share feasible.
    target, required_probability, cost_weights, bounds, fixed, max_distance
        The problem as solved.
    message
        What happened, in words.
    """

    inputs: pd.Series
    feasible: bool
    probability: float
    probability_search: float
    cost: float
    prediction: xr.Dataset
    nearest: pd.DataFrame | None
    history: pd.DataFrame
    target: dict[str, tuple[str, float]]
    required_probability: float
    cost_weights: dict[str, float]
    bounds: dict[str, tuple[float, float]]
    fixed: dict[str, float] = field(default_factory=dict)
    max_distance: float | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (inputs, probabilities, prediction of the targets, nearest)."""
        pred = {
            p: {
                v: float(self.prediction[v].sel(property=p).values[0])
                for v in self.prediction.data_vars
                if v not in ("observed", "inputs")
            }
            for p in self.target
        }
        return {
            "feasible": bool(self.feasible),
            "probability": float(self.probability),
            "probability_search": float(self.probability_search),
            "required_probability": float(self.required_probability),
            "cost": float(self.cost),
            "cost_weights": dict(self.cost_weights),
            "target": {k: list(v) for k, v in self.target.items()},
            "inputs": {k: float(v) for k, v in self.inputs.items()},
            "prediction": pred,
            "bounds": {k: list(v) for k, v in self.bounds.items()},
            "fixed": dict(self.fixed),
            "max_distance": self.max_distance,
            "nearest": None
            if self.nearest is None
            else self.nearest.reset_index().to_dict(orient="records"),
            "message": self.message,
        }

    def __repr__(self) -> str:
        head = "feasible" if self.feasible else "NOT feasible"
        targets = ", ".join(f"{k} {op} {v:g}" for k, (op, v) in self.target.items())
        lines = [
            f"<DesignResult: {head}; P({targets}) = {self.probability:.3f} "
            f"(required {self.required_probability:g}); cost {self.cost:.4g}>"
        ]
        for k, v in self.inputs.items():
            lines.append(f"  {k:<22} {v:10.4g}")
        if self.message:
            lines.append(f"  {self.message}")
        return "\n".join(lines)


def _check_names(names: Sequence[str], known: Sequence[str], what: str) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SettingError(f"unknown {what} {unknown}; the model's inputs are {list(known)}")


def inverse_design(
    model: PropertyTwinModel,
    target: Mapping[str, float | tuple[str, float]],
    probability: float = 0.9,
    *,
    cost: str | Mapping[str, float],
    bounds: Mapping[str, tuple[float, float]] | None = None,
    fixed: Mapping[str, float] | None = None,
    reference: Cohort | None = None,
    n_candidates: int = 1024,
    n_iterations: int = 20,
    elite_fraction: float = 0.1,
    n_draws: int = 128,
    n_draws_final: int = 2000,
    n_refine: int = 3,
    n_nearest: int = 5,
    max_distance: float | str | None = "auto",
    seed: int = 0,
) -> DesignResult:
    """Settings that meet target properties with a given probability at minimum cost.

    Minimise ``sum_k cost[k] * x_k`` over the free inputs ``x`` subject to
    ``P(every target met | x) >= probability`` under the twin's joint predictive,
    ``bounds`` on inputs (base inputs: the search box; derived inputs: constraints) and
    ``fixed`` inputs.

    Parameters
    ----------
    model
        A fitted :class:`PropertyTwinModel`.
    target
        ``{property: threshold}`` (met when ``>=``) or ``{property: ("<=", value)}``.
    probability
        Required probability of meeting every target jointly, in (0, 1).
    cost
        An input to minimise (``"cement"``) or linear weights ``{input: weight}`` over
        inputs (base or derived).
    bounds
        ``{input: (low, high)}``.  Base inputs default to the training range
        (:attr:`PropertyTwinModel.input_stats`), so the search stays where the twin has
        seen data unless told otherwise.
    fixed
        ``{input: value}`` held constant; a derived input that adjusts a component
        (``water_cement_ratio``) fixes that component per candidate.
    reference
        Real batches (a cohort with the model's modalities) to compare the answer with.
    n_candidates, n_iterations, elite_fraction
        Cross-entropy search: candidates per iteration (one vectorised twin pass
        each), iterations, share of candidates that update the search distribution.
    n_draws
        Joint predictive draws per candidate during the search.
    n_draws_final
        Fresh draws (another seed) for the final check of the best candidates.
    n_refine
        Local refinement rounds around the best candidate after the search.
    n_nearest
        Nearest reference batches to report.
    max_distance
        Keep designs near the data: a candidate whose standardised distance over the
        base inputs (as in :func:`nearest_batches`) to the nearest *training* batch
        exceeds this is infeasible.  ``"auto"``: the 95th percentile of the training
        batches' own nearest-neighbour distances; ``None``: no such limit.  Each
        component within its range does not make a mix plausible (a mix with every
        component near its maximum weighs far more than a cubic metre of concrete
        does); the twin's predictions for such combinations are extrapolations.
    seed
        Seed of the candidates and of the draws.

    Returns
    -------
    DesignResult

    Raises
    ------
    SettingError
        For unknown input names, fixed values outside their bounds, empty bounds or
        a derived input that cannot be fixed.
    """
    model._require_fitted()
    if not 0 < probability < 1:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if n_candidates < 2 or n_iterations < 1 or not 0 < elite_fraction <= 0.5:
        raise ValueError("need n_candidates >= 2, n_iterations >= 1, 0 < elite_fraction <= 0.5")
    known = model.input_names
    targets = {str(k): parse_target(v, str(k)) for k, v in target.items()}
    if not targets:
        raise ValueError("give at least one target")
    unknown = [k for k in targets if k not in model.property_names]
    if unknown:
        raise KeyError(f"unknown target properties {unknown}; properties: {model.property_names}")
    weights = {cost: 1.0} if isinstance(cost, str) else {str(k): float(v) for k, v in cost.items()}
    _check_names(list(weights), known, "cost input(s)")
    fixed = {str(k): float(v) for k, v in (fixed or {}).items()}
    _check_names(list(fixed), known, "fixed input(s)")
    model.derived.check_settings(list(fixed), known)
    bounds = {str(k): (float(v[0]), float(v[1])) for k, v in (bounds or {}).items()}
    _check_names(list(bounds), known, "bounded input(s)")
    for k, (lo, hi) in bounds.items():
        if not lo <= hi:
            raise SettingError(f"bounds of {k!r} are empty: ({lo:g}, {hi:g})")
    stats = model.input_stats
    for k, v in fixed.items():
        if k in bounds and not bounds[k][0] <= v <= bounds[k][1]:
            lo, hi = bounds[k]
            raise SettingError(f"fixed {k} = {v:g} lies outside its bounds ({lo:g}, {hi:g})")
        if k not in bounds and stats is not None and k in stats.index:
            lo, hi = float(stats.loc[k, "min"]), float(stats.loc[k, "max"])
            if not lo <= v <= hi:  # the default bounds: the training range
                raise SettingError(
                    f"fixed {k} = {v:g} lies outside the training range ({lo:g}, {hi:g}), the "
                    f"default bounds; pass bounds={{{k!r}: (low, high)}} to design there anyway"
                )

    solved = {model.derived[k].adjusts for k in fixed if k in model.derived}
    free = [n for n in model.base_inputs if n not in fixed and n not in solved]
    if not free:
        raise SettingError("every input is fixed: nothing to design")
    stats = model.input_stats
    box = {}
    for n in free:
        lo, hi = bounds.get(n, (float(stats.loc[n, "min"]), float(stats.loc[n, "max"])))
        box[n] = (lo, hi)
    constraints = {k: v for k, v in bounds.items() if k not in box and k not in fixed}
    support = _Support(model, max_distance)
    lo = np.array([box[n][0] for n in free])
    hi = np.array([box[n][1] for n in free])
    span = np.where(hi > lo, hi - lo, 0.0)
    rng = np.random.default_rng(seed)

    def inputs_of(u: np.ndarray) -> pd.DataFrame:
        cols = {n: lo[j] + u[:, j] * span[j] for j, n in enumerate(free)}
        base_fixed = {k: v for k, v in fixed.items() if k not in model.derived}
        derived_fixed = {k: v for k, v in fixed.items() if k in model.derived}
        cols.update({k: np.full(len(u), v) for k, v in base_fixed.items()})
        cols = model.derived.apply_settings(cols, derived_fixed, known)
        frame = pd.DataFrame({n: np.asarray(cols[n], dtype=float) for n in known if n in cols})
        frame.index = [f"c{i}" for i in range(len(frame))]
        return model.complete_inputs(frame)

    def evaluate(
        u: np.ndarray, draws: int, draw_seed: int, refine: int | str = 0
    ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
        x = inputs_of(u)
        c = sum(w * x[k].to_numpy() for k, w in weights.items())
        violation = np.zeros(len(x))
        for k, (a, b) in constraints.items():
            v = x[k].to_numpy()
            scale = max(abs(b - a), 1e-9)
            violation += (
                np.where(np.isnan(v), np.inf, np.maximum(a - v, 0) + np.maximum(v - b, 0)) / scale
            )
        violation += support.violation(x)
        draws_x = model.sample(x, n_draws=draws, seed=draw_seed, refine_steps=refine)
        p = probability_from_draws(draws_x, targets)
        return x, np.asarray(c, dtype=float), p, violation

    # the search asks for one Monte Carlo sd more than required: its estimates are noisy
    # and the cheapest "feasible" candidates are selected for luck as much as for merit
    needed = min(probability + np.sqrt(probability * (1 - probability) / n_draws), 1.0)
    n_elite = max(2, int(round(elite_fraction * n_candidates)))
    mean, sd = np.full(len(free), 0.5), np.full(len(free), 0.35)
    pool_u, pool_c, pool_p = [], [], []
    history = []
    for it in range(n_iterations + n_refine):
        refining = it >= n_iterations
        if refining:
            if not pool_u:
                break
            ok = np.concatenate(pool_p) >= needed
            if not ok.any():
                break
            all_u, all_c = np.concatenate(pool_u), np.concatenate(pool_c)
            best = all_u[np.flatnonzero(ok)[np.argmin(all_c[ok])]]
            step = 0.05 / (it - n_iterations + 1)
            u = np.clip(best + rng.normal(0.0, step, (n_candidates, len(free))), 0.0, 1.0)
        elif it == 0:
            u = rng.uniform(0.0, 1.0, (n_candidates, len(free)))
        else:
            u = np.clip(rng.normal(mean, sd, (n_candidates, len(free))), 0.0, 1.0)
        _, c, p, viol = evaluate(u, n_draws, seed)
        feasible = (p >= needed) & (viol <= 0)
        score = np.where(feasible, c, np.inf)
        order = np.lexsort((-(p - np.minimum(viol, 1e6)), score))
        if not refining:
            elite = u[order[:n_elite]]
            mean = 0.3 * mean + 0.7 * elite.mean(0)
            sd = np.maximum(0.3 * sd + 0.7 * elite.std(0), 0.03)
        keep = feasible.copy()
        keep[np.argsort(-np.where(viol <= 0, p, -1.0))[:32]] = True  # fallback if none is feasible
        pool_u.append(u[keep])
        pool_c.append(np.where(viol[keep] <= 0, c[keep], np.inf))
        pool_p.append(np.where(viol[keep] <= 0, p[keep], -1.0))
        history.append(
            {
                "iteration": it,
                "phase": "refine" if refining else "search",
                "best_feasible_cost": float(c[feasible].min()) if feasible.any() else np.nan,
                "max_probability": float(p.max()),
                "share_feasible": float(feasible.mean()),
            }
        )

    all_u, all_c, all_p = np.concatenate(pool_u), np.concatenate(pool_c), np.concatenate(pool_p)
    ok = all_p >= needed
    if ok.any():  # the cheapest candidates and a spread over the costlier ones
        idx = np.flatnonzero(ok)
        idx = idx[np.argsort(all_c[idx], kind="stable")]
        spread = np.unique(np.linspace(0, len(idx) - 1, 64).round().astype(int))
        shortlist = np.unique(np.concatenate([idx[:64], idx[spread]]))
        shortlist = shortlist[np.argsort(all_c[shortlist], kind="stable")]
    else:
        shortlist = np.argsort(-all_p)[:64]
    # the search uses the amortised posterior (fast); the final check the default
    # ("auto": refined where an input is missing, e.g. a ratio with a zero denominator)
    x, c, p_final, viol = evaluate(all_u[shortlist], n_draws_final, seed + 1, "auto")
    good = (p_final >= probability) & (viol <= 0)
    if good.any():
        j = np.flatnonzero(good)[np.argmin(c[good])]
        feasible = True
        msg = (
            f"cheapest of {int(good.sum())} shortlisted candidates that met the targets with "
            f"probability >= {probability:g} on {n_draws_final} fresh draws"
        )
    else:
        j = int(np.argmax(np.where(viol <= 0, p_final, -1.0)))
        feasible = False
        where = "within the bounds" + (" and near the data" if support.limit is not None else "")
        msg = (
            f"no candidate met the targets with probability >= {probability:g} {where}; the "
            f"most probable one reaches {p_final[j]:.3f}"
        )
    if support.limit is not None:
        msg += (
            f"; distance to the nearest training batch {support.distance(x.iloc[[j]])[0]:.2f} "
            f"(limit {support.limit:.2f})"
        )
    chosen = x.iloc[[j]].copy()
    chosen.index = ["design"]
    prediction = model.predict(chosen, n_draws=n_draws_final, seed=seed + 1)
    nearest = None
    if reference is not None:
        nearest = nearest_batches(model, chosen.iloc[0], reference, list(targets), n_nearest)
    return DesignResult(
        inputs=chosen.iloc[0].rename("design"),
        feasible=feasible,
        probability=float(p_final[j]),
        probability_search=float(all_p[shortlist[j]]),
        cost=float(c[j]),
        prediction=prediction,
        nearest=nearest,
        history=pd.DataFrame(history),
        target=targets,
        required_probability=float(probability),
        cost_weights=weights,
        bounds={**box, **constraints},
        fixed=fixed,
        max_distance=support.limit,
        message=msg,
    )


def _outside_range(model: PropertyTwinModel, inputs: pd.DataFrame) -> np.ndarray:
    """``(n, n_inputs)``: True where an input lies outside the training batches' range
    (:attr:`PropertyTwinModel.input_stats`; an input never measured has none)."""
    stats = model.input_stats.reindex(inputs.columns)
    values = inputs.to_numpy(dtype=float)
    lo, hi = stats["min"].to_numpy(dtype=float), stats["max"].to_numpy(dtype=float)
    return (values < lo) | (values > hi)


class _Support:
    """Standardised distance of candidates to the nearest training batch, and its limit."""

    def __init__(self, model: PropertyTwinModel, max_distance: float | str | None):
        self.names = model.base_inputs
        sd = model.input_stats.loc[self.names, "sd"].to_numpy(dtype=float)
        self.sd = np.where(sd > 0, sd, 1.0)
        train = model.training_inputs[self.names].to_numpy(dtype=float)
        self.train = train[np.isfinite(train).all(axis=1)] / self.sd
        if max_distance is None:
            self.limit = None
        elif max_distance == "auto":
            d = self._pairwise(self.train)
            np.fill_diagonal(d, np.inf)
            self.limit = float(np.quantile(d.min(axis=1), 0.95))
        elif isinstance(max_distance, str):
            raise ValueError(f"max_distance must be a number, 'auto' or None, got {max_distance!r}")
        else:
            self.limit = float(max_distance)

    def _pairwise(self, z: np.ndarray) -> np.ndarray:
        sq = (z**2).sum(1)[:, None] + (self.train**2).sum(1)[None, :] - 2 * z @ self.train.T
        return np.sqrt(np.maximum(sq, 0.0))

    def distance(self, x: pd.DataFrame) -> np.ndarray:
        z = x[self.names].to_numpy(dtype=float) / self.sd
        return self._pairwise(z).min(axis=1)

    def violation(self, x: pd.DataFrame) -> np.ndarray:
        if self.limit is None:
            return np.zeros(len(x))
        return np.maximum(self.distance(x) - self.limit, 0.0) / max(self.limit, 1e-9)


def nearest_batches(
    model: PropertyTwinModel,
    inputs: pd.Series,
    reference: Cohort,
    properties: Sequence[str],
    n: int = 5,
) -> pd.DataFrame:
    """The ``n`` reference batches nearest to ``inputs`` with their measured properties.

    Distance: Euclidean over the base (non-derived) inputs standardised by the
    training sd (:attr:`PropertyTwinModel.input_stats`); inputs missing in a
    reference batch are left out of its distance.
    """
    names = model.base_inputs
    sd = model.input_stats.loc[names, "sd"].to_numpy(dtype=float)
    sd = np.where(sd > 0, sd, 1.0)
    ref = model.input_frame(reference)
    z = (ref[names].to_numpy(dtype=float) - inputs[names].to_numpy(dtype=float)) / sd
    dist = np.sqrt(np.nansum(z**2, axis=1))
    order = np.argsort(dist, kind="stable")[:n]
    out = ref.iloc[order].copy()
    out.insert(0, "distance", dist[order])
    measured = model.output_frame(reference).iloc[order]
    for p in properties:
        out[f"measured_{p}"] = measured[p].to_numpy()
    return out
