"""Longitudinal forecasting with DynamicTwinModel on real data, against simple baselines.

Two data sets, both split **by patient** (``Cohort.split((0.7, 0.3), seed)``); models
are fitted on the training patients only and every number is measured on held-out
patients.

**Synthea** (``fhir/synthea_r4/``, read with :func:`twin.read_fhir`; the ingested
cohort is cached in the temp folder). Targets HbA1c (LOINC 4548-4), systolic BP
(8480-6) and BMI (39156-5). For each held-out patient with at least 3 distinct
observation times of a target, the last value is held out: the history is every
observation (all features) strictly before that time (``observations_before``), the
twin is instantiated from it and forecasts the target at that time. Point forecast:
the predictive median; interval: the 90 % predictive interval. Baselines from the
same history of the target: last value, patient mean, linear trend (OLS in time).

**Lesion trials** (``oncology/lesion_trials/patient_data.csv``, sum of lesion
diameters, 14 arms in 5 trials). Each patient's study arm is an intervention from
day 0 (its agent), plus a common ``treatment`` agent for every patient (a
hierarchical effect: common response with tightly shrunk arm deviations). For
held-out patients with more than ``k`` readings, the twin is instantiated from the
first ``k in {2, 3}`` readings and forecasts all later readings. Baselines: last
reading carried forward (LVCF), a per-patient exponential (log-linear) fit of
the first ``k`` readings, and learners trained on the training patients to predict
later readings directly for absolute error from the same inputs (gradient boosting,
median regression; :func:`direct_learner_scores`). Then readings are added one at a time with
``DynamicTwins.update`` (never retraining) for patients with at least 7 readings,
each stage forecasting the same target (the last reading). Finally, for Study 4,
held-out patients are instantiated from their pre-treatment readings (``t <= 0``)
and simulated under both arms (``scenarios/lesion_arms.yaml``, ``origin="reference"``);
the population-average simulated difference (arm 2 - arm 1) of the change from
baseline at days 56 / 112 / 168 is compared with the observed difference between the
held-out patients of the two arms (readings within +-21 days of the day; bootstrap
90 % interval).

Model settings were chosen on an inner split of the *training* patients only
(75/25, seed 1), comparing forecast MAE of a few candidates (Synthea: one joint model
of the three targets vs one model per target, latent dimension, initial structure;
lesions: transform offset, latent dimension, arm encodings, exposure kernel); see
``CONFIG`` below and docs/longitudinal.md.

Usage::

    python benchmarks/forecast.py                     # both data sets (~10 min on 1 core)
    python benchmarks/forecast.py --datasets lesions  # one of them
    python benchmarks/forecast.py --quick             # smoke test: few epochs (numbers meaningless)

Results go to ``benchmarks/results/forecast.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import data_root, git_commit  # noqa: E402

sys.path.insert(0, str(REPO))

import twin  # noqa: E402
from twin.cohort.build import intervention_vars  # noqa: E402
from twin.cohort.window import first_observations, observations_before  # noqa: E402
from twin.model.dynamic_model import DynamicTwinModel  # noqa: E402
from twin.model.forecast_calibration import held_out_last_readings  # noqa: E402
from twin.scenario import load_scenarios  # noqa: E402
from twin.simulation import contrast, simulate_twins  # noqa: E402

TARGETS = {"4548-4": "HbA1c", "8480-6": "systolic BP", "39156-5": "BMI"}
#: Baselines of the issue, measured on the whole corpus (for reference).
ISSUE_BASELINES = {
    "synthea": {
        "4548-4": {"last": 0.165},
        "8480-6": {"mean": 10.45},
        "39156-5": {"last": 0.506, "trend": 0.479},
    },
    "lesions": {"lvcf": {"2": 7.92, "3": 5.67}, "exp_fit": {"2": 18.7, "3": 11.8}},
}

CONFIG = {
    "synthea": {
        "models": "one per target (features=[target])",
        "latent_dim": 2,
        "structure": "trend",
        "agents": [],
        "fit": {"epochs": 300, "lr": 0.05, "patience": 60},
    },
    "lesions": {
        "transform": "log+5",
        "latent_dim": 3,
        "effect_prior_sd": {"treatment": 1.0, "*": 0.05},
        "exposure": {"kernel": "bolus", "half_life": 60.0},
        "fit": {"epochs": 300, "lr": 0.03, "patience": 40},
    },
}


def paired_bootstrap(
    err_a: np.ndarray, err_b: np.ndarray, groups: np.ndarray | None, seed: int, n: int = 2000
) -> list[float]:
    """90 % bootstrap interval of ``mean(err_a) - mean(err_b)``, resampling patients (groups)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = np.arange(len(err_a))
    uniq, inv = np.unique(groups, return_inverse=True)
    sa = np.bincount(inv, weights=err_a, minlength=len(uniq))
    sb = np.bincount(inv, weights=err_b, minlength=len(uniq))
    cnt = np.bincount(inv, minlength=len(uniq)).astype(float)
    idx = rng.integers(0, len(uniq), size=(n, len(uniq)))
    diff = (sa[idx].sum(1) - sb[idx].sum(1)) / cnt[idx].sum(1)
    return [float(x) for x in np.quantile(diff, [0.05, 0.95])]


# ---------------------------------------------------------------------- Synthea
def synthea_cohort(folder: Path, jobs: int) -> twin.Cohort:
    """The ingested Synthea cohort, cached in the temp folder.

    Keyed by the file list and the source of the FHIR reader, so a change to either
    re-reads the bundles.
    """
    files = sorted(folder.glob("*.json.gz"))
    if not files:
        raise FileNotFoundError(f"no Synthea bundles in {folder} (set TWIN_DATA?)")
    digest = hashlib.sha256(
        "".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files).encode()
    )
    for src in sorted((REPO / "twin" / "io" / "fhir").glob("*.py")):
        digest.update(src.read_bytes())
    key = digest.hexdigest()[:12]
    cache = Path(tempfile.gettempdir()) / f"twin_forecast_synthea_{key}.nc"
    if cache.exists():
        try:
            return twin.Cohort.load(cache)
        except ValueError:
            cache.unlink()
    cohort = twin.read_fhir(folder, n_jobs=jobs)
    cohort.save(cache, overwrite=True)
    return cohort


def synthea_targets(cohort: twin.Cohort, code: str) -> pd.DataFrame:
    """Per patient with >= 3 distinct times of ``code``: held-out time and value, baselines."""
    held = held_out_last_readings(cohort, "observations", code, min_history=2).sort_index()
    df = cohort.to_long("observations")
    d = df[df["feature"] == code].sort_values(["individual", "t"], kind="stable")
    rows = {}
    for pid, g in d[d["individual"].isin(held.index)].groupby("individual", sort=False):
        t_star, y = held.loc[pid, "t"], held.loc[pid, "y"]
        h = g[g["t"] < t_star]
        tt, vv = h["t"].to_numpy(), h["value"].to_numpy()
        trend = np.polyval(np.polyfit(tt, vv, 1), t_star) if np.ptp(tt) > 0 else vv.mean()
        rows[pid] = {"t": t_star, "y": y, "last": vv[-1], "mean": vv.mean(), "trend": trend}
    return pd.DataFrame.from_dict(rows, orient="index")


def run_synthea(args: argparse.Namespace) -> dict:
    cfg = CONFIG["synthea"]
    t0 = time.perf_counter()
    cohort = synthea_cohort(data_root() / "fhir" / "synthea_r4", args.jobs)
    read_s = time.perf_counter() - t0
    train, test = cohort.split((0.7, 0.3), seed=args.seed)
    fit = dict(cfg["fit"])
    if args.quick:
        fit["epochs"] = 5
    results = {}
    fit_s = {}
    for code, name in TARGETS.items():
        model = DynamicTwinModel(
            cohort.schema,
            ["observations"],
            features={"observations": [code]},
            latent_dim=cfg["latent_dim"],
            agents=cfg["agents"],
            structure=cfg["structure"],
        )
        t0 = time.perf_counter()
        model.fit(train, seed=args.seed, progress=not args.no_progress, **fit)
        fit_s[code] = round(time.perf_counter() - t0, 1)
        # interval scale from the training patients' own held-out last readings
        calibration = model.calibrate_forecast(train).iloc[0]
        print(model)
        tg = synthea_targets(test, code)
        pos = pd.Index(test.individuals).get_indexer(tg.index)
        sub = test.select(pos)
        cut = tg["t"].to_numpy(dtype=float)
        twins = model.instantiate(observations_before(sub, cut))
        fc = twins.forecast(cut[:, None], after_death="keep")  # held-out readings exist
        raw = twins.forecast(cut[:, None], calibrated=False, after_death="keep")
        y = tg["y"].to_numpy(dtype=float)
        med = fc[f"{code}_q50"].values[:, 0]
        lo, hi = fc[f"{code}_q05"].values[:, 0], fc[f"{code}_q95"].values[:, 0]
        raw_lo, raw_hi = raw[f"{code}_q05"].values[:, 0], raw[f"{code}_q95"].values[:, 0]
        base = {
            b: float(np.mean(np.abs(tg[b].to_numpy(dtype=float) - y)))
            for b in ("last", "mean", "trend")
        }
        best = min(base, key=base.get)
        mae = float(np.mean(np.abs(med - y)))
        diff_ci = paired_bootstrap(
            np.abs(med - y), np.abs(tg[best].to_numpy(dtype=float) - y), None, args.seed
        )
        results[code] = {
            "name": name,
            "n_patients": len(y),
            "twin_mae": mae,
            "twin_mae_of_mean": float(np.mean(np.abs(fc[code].values[:, 0] - y))),
            "coverage_90": float(np.mean((y >= lo) & (y <= hi))),
            "interval_width_90": float(np.mean(hi - lo)),
            "calibration": {
                "source": "training patients, last reading held out",
                "n_patients": int(calibration["n"]),
                "sd_factor": float(calibration["factor"]),
                "uncalibrated_coverage_90": float(np.mean((y >= raw_lo) & (y <= raw_hi))),
                "uncalibrated_interval_width_90": float(np.mean(raw_hi - raw_lo)),
            },
            "baselines_mae": base,
            "best_baseline": best,
            "beats_best_baseline": bool(mae < base[best]),
            "relative_to_best": mae / base[best],
            "mae_difference_vs_best_interval_90": diff_ci,
            "unit": str(fc[code].attrs.get("units", "")),
            "epochs_run": len(model.history.train_loss),
            "best_epoch": model.history.best_epoch,
        }
    return {
        "protocol": "70/30 split by patient (seed), last value of each target held out, "
        "history = all observations strictly before it; held-out patients only; forecast "
        "intervals calibrated on the training patients (DynamicTwinModel.calibrate_forecast)",
        "config": cfg,
        "n_train_patients": len(train),
        "n_test_patients": len(test),
        "read_seconds": round(read_s, 1),
        "fit_seconds": fit_s,
        "targets": results,
        "issue_baselines_whole_corpus": ISSUE_BASELINES["synthea"],
    }


# ---------------------------------------------------------------------- lesions
def with_common_treatment(cohort: twin.Cohort) -> twin.Cohort:
    """Add a ``treatment`` intervention (same timing) beside every study-arm intervention."""
    iv = cohort.interventions
    both = pd.concat([iv, iv.assign(agent="treatment")], ignore_index=True)
    data = cohort.data.drop_dims("intervention")
    ref = cohort.reference_time
    return twin.Cohort(data.assign(intervention_vars(both, ref, pd.Index(cohort.individuals))))


def lesion_model(schema, cfg: dict, arms: bool) -> DynamicTwinModel:
    agents = None if arms else []
    return DynamicTwinModel(
        schema,
        ["lesion"],
        features={"lesion": ["diameter"]},
        transforms={"diameter": cfg["transform"]},
        latent_dim=cfg["latent_dim"],
        agents=agents,
        effect_prior_sd=cfg["effect_prior_sd"] if arms else 1.0,
    )


def later_readings(
    cohort: twin.Cohort, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Times and values (N, J) of readings after the k-th, the k-th value, the first k (t, v)."""
    df = cohort.to_long("lesion")
    d = df[df["feature"] == "diameter"].sort_values(["individual", "t"], kind="stable")
    d = d.assign(rank=d.groupby("individual").cumcount())
    pos = pd.Index(cohort.individuals).get_indexer(d["individual"])
    later = d[d["rank"] >= k]
    j = later.groupby("individual").cumcount().to_numpy()
    J = int(j.max()) + 1 if len(j) else 1
    T = np.full((len(cohort), J), np.nan)
    Y = T.copy()
    lp = pd.Index(cohort.individuals).get_indexer(later["individual"])
    T[lp, j] = later["t"].to_numpy()
    Y[lp, j] = later["value"].to_numpy()
    first = d[d["rank"] < k]
    Th = np.full((len(cohort), k), np.nan)
    Vh = Th.copy()
    fp = pd.Index(cohort.individuals).get_indexer(first["individual"])
    Th[fp, first["rank"].to_numpy()] = first["t"].to_numpy()
    Vh[fp, first["rank"].to_numpy()] = first["value"].to_numpy()
    del pos
    return T, Y, Vh[:, k - 1], np.stack([Th, Vh])


def exponential_fit(history: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-patient log-linear least-squares fit of the first readings, extrapolated."""
    th, vh = history
    lv = np.log(np.maximum(vh, 1e-3))
    tm, lm = th.mean(1, keepdims=True), lv.mean(1, keepdims=True)
    var = ((th - tm) ** 2).sum(1, keepdims=True)
    slope = np.where(
        var > 0, ((th - tm) * (lv - lm)).sum(1, keepdims=True) / np.where(var > 0, var, 1), 0
    )
    return np.exp(lm + slope * (T - tm))


def _arm_of(cohort: twin.Cohort) -> np.ndarray:
    """Each patient's study arm (the agent that is not the common ``treatment``)."""
    iv = cohort.interventions
    arms = iv[iv["agent"] != "treatment"].drop_duplicates("individual").set_index("individual")
    return arms["agent"].reindex(list(cohort.individuals)).to_numpy(dtype=object)


def _direct_features(cohort: twin.Cohort, k: int, arms: list[str]):
    """One row per (patient, later reading): what a direct learner sees, and the truth.

    Features: log(first k readings + 5), their times, the target time, its gap to the
    k-th reading, and the arm (index into ``arms``).  Returns X, y, the k-th reading,
    and the patient index of each row.
    """
    T, Y, last, (th, vh) = later_readings(cohort, k)
    ok = np.isfinite(Y)
    rows, cols = np.nonzero(ok)
    arm = pd.Index(arms).get_indexer(_arm_of(cohort))[rows]
    X = np.column_stack(
        [np.log(vh[rows] + 5.0), th[rows], T[ok], T[ok] - th[rows, -1], arm.astype(float)]
    )
    return X, Y[ok], last[rows], rows


def direct_learner_scores(train: twin.Cohort, test: twin.Cohort, k: int, seed: int) -> dict:
    """Learners trained on the training patients to predict later readings directly.

    They see the same inputs as the twin (first ``k`` readings, their times, the
    target time, the arm) and are fitted for the MAE itself, in log space relative to
    the k-th reading: a gradient-boosted model (absolute-error loss, depth and
    iterations by 3-fold inner CV grouped by patient) and a linear median (quantile)
    regression with per-arm slopes in time.  They show how far below the last value
    any forecaster from these inputs gets on these patients.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import QuantileRegressor
    from sklearn.model_selection import GroupKFold

    arms = sorted(set(_arm_of(train)) | set(_arm_of(test)))
    Xtr, ytr, ltr, gtr = _direct_features(train, k, arms)
    Xte, yte, lte, gte = _direct_features(test, k, arms)
    rtr = np.log(ytr + 5.0) - np.log(ltr + 5.0)
    cat = np.zeros(Xtr.shape[1], bool)
    cat[-1] = True

    def gbm(depth: int, iters: int):
        return HistGradientBoostingRegressor(
            loss="absolute_error",
            learning_rate=0.05,
            max_depth=depth,
            max_iter=iters,
            categorical_features=cat,
            random_state=seed,
        )

    def back(r, last):
        return np.exp(r + np.log(last + 5.0)) - 5.0

    grid = [(d, n) for d in (2, 3, 5) for n in (100, 300)]
    inner = []
    for d, n in grid:
        err = []
        for a, b in GroupKFold(3).split(Xtr, rtr, gtr):
            pred = back(gbm(d, n).fit(Xtr[a], rtr[a]).predict(Xtr[b]), ltr[b])
            err.append(np.abs(pred - ytr[b]).mean())
        inner.append(float(np.mean(err)))
    depth, iters = grid[int(np.argmin(inner))]
    p_gbm = back(gbm(depth, iters).fit(Xtr, rtr).predict(Xte), lte)

    def linear(X):
        onehot = np.eye(len(arms))[X[:, -1].astype(int)]
        gap = X[:, -2:-1] / 100.0
        return np.column_stack([X[:, :k], gap, onehot * gap, onehot])

    qr = QuantileRegressor(quantile=0.5, alpha=1e-4, solver="highs")
    p_lin = back(qr.fit(linear(Xtr), rtr).predict(linear(Xte)), lte)
    lvcf = float(np.abs(lte - yte).mean())
    out = {"k": k, "n_readings": len(yte), "lvcf_mae": lvcf}
    for name, pred in (("gbm_direct", p_gbm), ("median_regression", p_lin)):
        mae = float(np.abs(pred - yte).mean())
        out[name] = {"mae": mae, "relative_to_lvcf": mae / lvcf}
    out["gbm_direct"]["chosen"] = {"max_depth": depth, "max_iter": iters}
    return out


def forecast_scores(model, test: twin.Cohort, k: int) -> dict:
    T, Y, last, history = later_readings(test, k)
    keep = np.isfinite(Y).any(1)
    sub = test.select(np.nonzero(keep)[0])
    T, Y, last, history = T[keep], Y[keep], last[keep], history[:, keep]
    twins = model.instantiate(first_observations(sub, k, "lesion", "diameter"))
    fc = twins.forecast(np.where(np.isnan(T), twins.time[:, None], T))
    ok = np.isfinite(Y)
    med = fc["diameter_q50"].values
    lo, hi = fc["diameter_q05"].values, fc["diameter_q95"].values
    mae = float(np.abs(med - Y)[ok].mean())
    lvcf = float(np.abs(last[:, None] - Y)[ok].mean())
    patient = np.broadcast_to(np.arange(len(Y))[:, None], Y.shape)[ok]
    diff_ci = paired_bootstrap(np.abs(med - Y)[ok], np.abs(last[:, None] - Y)[ok], patient, seed=0)
    return {
        "k": k,
        "n_patients": int(keep.sum()),
        "n_readings": int(ok.sum()),
        "twin_mae": mae,
        "twin_mae_of_mean": float(np.abs(fc["diameter"].values - Y)[ok].mean()),
        "lvcf_mae": lvcf,
        "exp_fit_mae": float(np.abs(exponential_fit(history, T) - Y)[ok].mean()),
        "relative_to_lvcf": mae / lvcf,
        "mae_difference_vs_lvcf_interval_90": diff_ci,
        "coverage_90": float(((Y >= lo) & (Y <= hi))[ok].mean()),
        "interval_width_90": float((hi - lo)[ok].mean()),
    }


def update_curve(model, test: twin.Cohort, k_min: int = 2, k_max: int = 6) -> dict:
    """Add readings one at a time with ``update``; forecast the last reading at each stage."""
    df = test.to_long("lesion")
    d = df[df["feature"] == "diameter"].sort_values(["individual", "t"], kind="stable")
    n = d.groupby("individual").size()
    ids = n[n >= k_max + 1].index
    sub = test.select(list(ids))
    dd = d[d["individual"].isin(ids)]
    last = dd.groupby("individual").tail(1).set_index("individual").loc[list(sub.individuals)]
    t_last, y_last = last["t"].to_numpy(), last["value"].to_numpy()
    twins = model.instantiate(first_observations(sub, k_min, "lesion", "diameter"))
    stages = []
    max_diff = 0.0
    for k in range(k_min, k_max + 1):
        if k > k_min:
            twins = twins.update(first_observations(sub, k, "lesion", "diameter"))
            direct = model.instantiate(first_observations(sub, k, "lesion", "diameter"))
            max_diff = max(max_diff, float((twins.mean - direct.mean).abs().max()))
        fc = twins.forecast(t_last[:, None])
        med = fc["diameter_q50"].values[:, 0]
        lo, hi = fc["diameter_q05"].values[:, 0], fc["diameter_q95"].values[:, 0]
        stages.append(
            {
                "readings": k,
                "mae": float(np.abs(med - y_last).mean()),
                "interval_width_90": float((hi - lo).mean()),
                "coverage_90": float(((y_last >= lo) & (y_last <= hi)).mean()),
                "median_horizon_days": float(np.median(t_last - twins.time)),
            }
        )
    return {
        "n_patients": len(sub),
        "target": f"last reading of patients with >= {k_max + 1} readings",
        "stages": stages,
        "max_abs_difference_update_vs_refit_latent_mean": max_diff,
    }


def arm_contrast(model, test: twin.Cohort, n_draws: int, seed: int, window: float = 21.0) -> dict:
    scenarios = load_scenarios(REPO / "scenarios" / "lesion_arms.yaml")
    names = [s.name for s in scenarios]
    arm = test.covariates["arm"]
    s4 = test.select(np.nonzero(arm.isin(names).to_numpy())[0])
    base = observations_before(s4, 1e-6)  # pre-treatment readings (t <= 0)
    twins = model.instantiate(base)
    res = simulate_twins(
        twins, scenarios, n_draws=n_draws, seed=seed, origin="reference", progress=False
    )
    ct = contrast(res, names[1], names[0], average=True).sel(feature="diameter")
    df = s4.to_long("lesion")
    d = df[df["feature"] == "diameter"].sort_values(["individual", "t"], kind="stable")
    baseline = d[d["t"] <= 0].groupby("individual")["value"].last()
    arms_of = s4.covariates["arm"]
    rng = np.random.default_rng(seed)
    out = []
    for tau in res["time"].values[1:]:
        near = d[(d["t"] - tau).abs() <= window].copy()
        near["dist"] = (near["t"] - tau).abs()
        pick = near.sort_values("dist").groupby("individual").head(1).set_index("individual")
        change = (pick["value"] - baseline.reindex(pick.index)).dropna()
        groups = [change[arms_of.reindex(change.index) == a].to_numpy() for a in names]
        observed = groups[1].mean() - groups[0].mean()
        boots = [
            rng.choice(groups[1], len(groups[1])).mean()
            - rng.choice(groups[0], len(groups[0])).mean()
            for _ in range(2000)
        ]
        lo_o, hi_o = np.quantile(boots, [0.05, 0.95])
        # simulated change of the same patients under their own arm
        sim_own = {}
        for a, g in zip(names, groups, strict=True):
            ids = change.index[arms_of.reindex(change.index) == a]
            v = res["value"].sel(scenario=a, time=tau, feature="diameter").sel(individual=list(ids))
            b = baseline.reindex(ids).to_numpy()
            sim_own[a] = {
                "observed_mean_change": float(g.mean()),
                "simulated_mean_change": float((v.mean("draw").values - b).mean()),
                "n": int(len(g)),
            }
        c = ct.sel(time=tau)
        out.append(
            {
                "day": float(tau),
                "observed_difference": float(observed),
                "observed_interval_90": [float(lo_o), float(hi_o)],
                "simulated_difference": float(c["mean"]),
                "simulated_interval_90": [float(c["lower"]), float(c["upper"])],
                "intervals_overlap": bool(
                    max(lo_o, float(c["lower"])) <= min(hi_o, float(c["upper"]))
                ),
                "observed_in_simulated_interval": bool(
                    float(c["lower"]) <= observed <= float(c["upper"])
                ),
                "per_arm": sim_own,
            }
        )
    return {
        "trial": "Study 4",
        "difference": f"{names[1]} - {names[0]}, change of the sum of diameters from baseline (mm)",
        "n_held_out_patients": len(s4),
        "n_draws": n_draws,
        "window_days": window,
        "days": out,
    }


def run_lesions(args: argparse.Namespace) -> dict:
    cfg = CONFIG["lesions"]
    path = data_root() / "oncology" / "lesion_trials" / "patient_data.csv"
    cohort = with_common_treatment(twin.read_lesion_trials(path))
    train, test = cohort.split((0.7, 0.3), seed=args.seed)
    fit = dict(cfg["fit"])
    if args.quick:
        fit["epochs"] = 5
    out = {
        "config": cfg,
        "n_train_patients": len(train),
        "n_test_patients": len(test),
        "models": {},
    }
    models = {}
    for label, arms in (("arm_as_intervention", True), ("no_intervention", False)):
        model = lesion_model(cohort.schema, cfg, arms)
        if arms:
            model.agent_exposure = {
                a: dict(cfg["exposure"]) for a in sorted(set(train.interventions["agent"]))
            }
        t0 = time.perf_counter()
        model.fit(train, seed=args.seed, progress=not args.no_progress, **fit)
        print(model)
        models[label] = model
        out["models"][label] = {
            "fit_seconds": round(time.perf_counter() - t0, 1),
            "agents": model.agents,
            "forecast": [forecast_scores(model, test, k) for k in (2, 3)],
        }
    out["direct_learners"] = [direct_learner_scores(train, test, k, args.seed) for k in (2, 3)]
    main = models["arm_as_intervention"]
    out["update_curve"] = update_curve(main, test)
    out["arm_contrast"] = arm_contrast(main, test, args.draws, args.seed)
    effects = main.effects(horizons=(56.0, 112.0, 168.0))
    out["learned_effects_log_scale"] = effects[
        effects["agent"].isin(["treatment", "Study_4_Arm_1", "Study_4_Arm_2"])
    ].to_dict(orient="records")
    out["issue_baselines_all_patients"] = ISSUE_BASELINES["lesions"]
    return out


# ---------------------------------------------------------------------- reporting
def machine_info() -> dict:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "load_average_1min_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def print_summary(results: dict) -> None:
    if "synthea" in results:
        s = results["synthea"]
        print("\nSynthea: last value held out, held-out patients (MAE; 90 % interval coverage)")
        print(
            f"{'target':<12} {'n':>4} {'twin':>8} {'last':>8} {'mean':>8} {'trend':>8} {'cover':>6} "
            f"{'uncal':>6}  beats best?"
        )
        for r in s["targets"].values():
            b = r["baselines_mae"]
            print(
                f"{r['name']:<12} {r['n_patients']:>4} {r['twin_mae']:>8.3f} {b['last']:>8.3f} "
                f"{b['mean']:>8.3f} {b['trend']:>8.3f} {r['coverage_90']:>6.2f} "
                f"{r['calibration']['uncalibrated_coverage_90']:>6.2f}  "
                f"{'yes' if r['beats_best_baseline'] else 'no'} ({r['relative_to_best']:.3f} x best; "
                f"difference 90% CI {r['mae_difference_vs_best_interval_90'][0]:+.3f} to "
                f"{r['mae_difference_vs_best_interval_90'][1]:+.3f})"
            )
    if "lesions" in results:
        les = results["lesions"]
        print("\nLesion trials: later readings from the first k, held-out patients (MAE mm)")
        for label, m in les["models"].items():
            for r in m["forecast"]:
                print(
                    f"{label:<20} k={r['k']} twin {r['twin_mae']:.2f}  LVCF {r['lvcf_mae']:.2f} "
                    f"({r['relative_to_lvcf']:.3f} x)  exp fit {r['exp_fit_mae']:.1f}  "
                    f"coverage {r['coverage_90']:.3f}  width {r['interval_width_90']:.1f}  "
                    f"diff vs LVCF 90% CI {r['mae_difference_vs_lvcf_interval_90'][0]:+.2f} to "
                    f"{r['mae_difference_vs_lvcf_interval_90'][1]:+.2f}"
                )
        for r in les.get("direct_learners", []):
            print(
                f"direct learners   k={r['k']} LVCF {r['lvcf_mae']:.2f}  "
                + "  ".join(
                    f"{n} {r[n]['mae']:.2f} ({r[n]['relative_to_lvcf']:.3f} x)"
                    for n in ("gbm_direct", "median_regression")
                )
            )
        print("update curve (same target, readings added by update):")
        for st in les["update_curve"]["stages"]:
            print(
                f"  {st['readings']} readings: MAE {st['mae']:.2f}  width {st['interval_width_90']:.1f}  "
                f"coverage {st['coverage_90']:.2f}"
            )
        print("Study 4 arm 2 - arm 1, change from baseline (mm):")
        for day in les["arm_contrast"]["days"]:
            print(
                f"  day {day['day']:.0f}: observed {day['observed_difference']:+.2f} "
                f"[{day['observed_interval_90'][0]:+.2f}, {day['observed_interval_90'][1]:+.2f}]  "
                f"simulated {day['simulated_difference']:+.2f} "
                f"[{day['simulated_interval_90'][0]:+.2f}, {day['simulated_interval_90'][1]:+.2f}]"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--datasets", nargs="+", default=["synthea", "lesions"], choices=["synthea", "lesions"]
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draws", type=int, default=400, help="Draws per patient and arm (contrast).")
    p.add_argument("--jobs", type=int, default=1, help="Worker processes for FHIR ingestion.")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    p.add_argument("--quick", action="store_true", help="Few epochs: checks the script runs.")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "forecast.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from twin._util.atomic import write_text_atomic

    started = time.perf_counter()
    results: dict = {}
    if "lesions" in args.datasets:
        results["lesions"] = run_lesions(args)
    if "synthea" in args.datasets:
        results["synthea"] = run_synthea(args)
    report = {
        "benchmark": "forecast",
        "args": {k: str(v) for k, v in vars(args).items()},
        "quick": bool(args.quick),
        "seconds": round(time.perf_counter() - started, 1),
        "git": git_commit(),
        "machine": machine_info(),
        "results": results,
    }
    text = json.dumps(report, indent=2, default=float)
    write_text_atomic(args.out, text + "\n", overwrite=True)
    print_summary(results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
