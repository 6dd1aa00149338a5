"""Tests of twin.evaluate against answers known analytically."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import integrate, stats

import twin
from twin.evaluate import (
    crps_from_quantiles,
    crps_gaussian,
    evaluate_imputation,
    hidden_entries,
    imputation_metrics,
)

# Two features, three individuals; worked by hand:
#   f1: truth 0 1 2 (mean 1, SST 2), prediction 0 1 1 -> SSE 1, R² 0.5, r = sqrt(3)/2
#   f2: truth 0 2 4 (mean 2, SST 8), prediction 1 2 3 -> SSE 2, R² 0.75, r = 1
#   variance-weighted R² = 1 - 3/10 = 0.7; per-feature mean 0.625
TRUTH = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]])
PRED = np.array([[0.0, 1.0], [1.0, 2.0], [1.0, 3.0]])


def test_perfect_prediction():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 7))
    m = imputation_metrics(y, y.copy())
    assert m["r2"] == pytest.approx(1.0)
    assert m["r2_per_feature_mean"] == pytest.approx(1.0)
    assert m["pearson_r"] == pytest.approx(1.0)
    assert m["pearson_r_per_feature_mean"] == pytest.approx(1.0)
    assert m["mae"] == 0.0 and m["rmse"] == 0.0
    assert m["n_entries"] == 350 and m["n_features"] == 7 and m["n_features_r"] == 7
    assert "coverage" not in m and "crps_gaussian" not in m


def test_predicting_the_mean_scores_zero():
    rng = np.random.default_rng(1)
    y = rng.normal(loc=[0.0, 5.0, -3.0], scale=[1.0, 10.0, 0.1], size=(200, 3))
    pred = np.broadcast_to(y.mean(axis=0), y.shape)
    m = imputation_metrics(y, pred)
    assert m["r2"] == pytest.approx(0.0, abs=1e-12)
    assert m["r2_per_feature_mean"] == pytest.approx(0.0, abs=1e-12)
    # a constant prediction has no per-feature correlation
    assert m["n_features_r"] == 0 and m["pearson_r_per_feature_mean"] is None
    # with the training mean as centre, predicting the training mean scores exactly 0
    train_mu = np.array([0.3, 4.0, -3.1])
    m2 = imputation_metrics(y, np.broadcast_to(train_mu, y.shape), train_mean=train_mu)
    assert m2["r2"] == pytest.approx(0.0, abs=1e-12)
    # ... whereas the test-mean centre makes the same prediction negative
    assert imputation_metrics(y, np.broadcast_to(train_mu, y.shape))["r2"] < -0.01


def test_hand_computed_example():
    m = imputation_metrics(TRUTH, PRED)
    assert m["r2"] == pytest.approx(0.7)
    assert m["r2_per_feature_mean"] == pytest.approx(0.625)
    assert m["pearson_r_per_feature_mean"] == pytest.approx((1 + math.sqrt(3) / 2) / 2)
    assert m["pearson_r"] == pytest.approx(np.corrcoef(TRUTH.ravel(), PRED.ravel())[0, 1])
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(math.sqrt(0.5))


def test_train_mean_centre_hand_computed():
    # centre (0, 0): SST f1 = 0+1+4 = 5, f2 = 0+4+16 = 20 -> R² = 1 - 3/25
    m = imputation_metrics(TRUTH, PRED, train_mean=np.zeros(2))
    assert m["r2"] == pytest.approx(1 - 3 / 25)
    assert m["r2_per_feature_mean"] == pytest.approx(((1 - 1 / 5) + (1 - 2 / 20)) / 2)
    with pytest.raises(ValueError, match="train_mean"):
        imputation_metrics(TRUTH, PRED, train_mean=np.zeros(3))


def test_noisy_prediction_r2_matches_noise_level():
    # prediction = truth + independent noise: expected R² = 1 - var(noise) / var(truth)
    rng = np.random.default_rng(2)
    y = rng.normal(scale=2.0, size=(20000, 4))
    pred = y + rng.normal(scale=1.0, size=y.shape)
    m = imputation_metrics(y, pred)
    assert m["r2"] == pytest.approx(1 - 1 / 4, abs=0.01)
    assert m["pearson_r_per_feature_mean"] == pytest.approx(2 / math.sqrt(5), abs=0.01)
    assert m["rmse"] == pytest.approx(1.0, abs=0.01)
    assert m["mae"] == pytest.approx(math.sqrt(2 / math.pi), abs=0.01)


def test_coverage_of_exact_gaussian_intervals():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(100_000, 1))
    sd = rng.uniform(0.5, 2.0, size=mu.shape)
    y = mu + sd * rng.normal(size=mu.shape)
    z = stats.norm.ppf(0.95)
    m = imputation_metrics(y, mu, mu - z * sd, mu + z * sd, sd=sd)
    assert m["coverage"] == pytest.approx(0.90, abs=0.01)
    assert m["interval_width"] == pytest.approx(2 * z * sd.mean())
    # expected CRPS of the true Gaussian is sd / sqrt(pi)
    assert m["crps_gaussian"] == pytest.approx(sd.mean() / math.sqrt(math.pi), rel=0.02)
    # intervals half as wide cover much less
    narrow = imputation_metrics(y, mu, mu - z * sd / 2, mu + z * sd / 2)
    assert narrow["coverage"] == pytest.approx(2 * stats.norm.cdf(z / 2) - 1, abs=0.01)


def test_nan_truth_and_mask_are_skipped():
    y = TRUTH.copy()
    pred = PRED.copy()
    y_big = np.vstack([y, [[np.nan, np.nan]], [[100.0, -100.0]]])
    pred_big = np.vstack([pred, [[np.nan, np.nan]], [[0.0, 0.0]]])
    mask = np.ones_like(y_big, dtype=bool)
    mask[-1] = False  # the wildly wrong row is excluded by the mask
    m = imputation_metrics(y_big, pred_big, mask=mask)
    assert m["n_entries"] == 6
    assert m["r2"] == pytest.approx(0.7)
    # the NaN prediction sits on a NaN truth, so it is never scored; without the mask
    # the wrong row counts and R² collapses
    unmasked = imputation_metrics(y_big, pred_big)
    assert unmasked["n_entries"] == 8 and unmasked["r2"] < 0.2


def test_nan_prediction_on_scored_entry_raises():
    pred = PRED.copy()
    pred[1, 1] = np.nan
    with pytest.raises(ValueError, match="not finite on 1 scored"):
        imputation_metrics(TRUTH, pred)
    mask = np.ones_like(TRUTH, dtype=bool)
    mask[1, 1] = False
    assert imputation_metrics(TRUTH, pred, mask=mask)["n_entries"] == 5


def test_constant_features_excluded_from_per_feature_scores():
    y = np.column_stack([TRUTH, np.full(3, 7.0)])
    pred = np.column_stack([PRED, [7.0, 7.5, 6.5]])
    m = imputation_metrics(y, pred)
    assert m["n_features"] == 3
    assert m["n_features_r2"] == 2 and m["n_features_r"] == 2
    assert m["r2_per_feature_mean"] == pytest.approx(0.625)
    # the constant feature still adds its SSE (0.5) to the variance-weighted R²
    assert m["r2"] == pytest.approx(1 - 3.5 / 10)
    assert m["pearson_r_per_feature_mean"] == pytest.approx((1 + math.sqrt(3) / 2) / 2)


def test_all_constant_truth_gives_none():
    y = np.ones((4, 2))
    m = imputation_metrics(y, y + 0.1)
    assert m["r2"] is None and m["r2_per_feature_mean"] is None
    assert m["pearson_r"] is None and m["pearson_r_per_feature_mean"] is None
    assert m["mae"] == pytest.approx(0.1)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        imputation_metrics(TRUTH, PRED[:2])
    with pytest.raises(ValueError, match="both"):
        imputation_metrics(TRUTH, PRED, lower=PRED - 1)
    with pytest.raises(ValueError, match="lower > upper"):
        imputation_metrics(TRUTH, PRED, PRED + 1, PRED - 1)
    with pytest.raises(ValueError, match="no entry"):
        imputation_metrics(TRUTH, PRED, mask=np.zeros_like(TRUTH, dtype=bool))


def test_crps_gaussian_matches_numerical_integral():
    mu, s = 0.4, 1.3
    for y in (-2.0, 0.4, 1.7):
        num, _ = integrate.quad(
            lambda x, y=y: (stats.norm.cdf(x, mu, s) - (x >= y)) ** 2, -30, 30, points=[y]
        )
        assert crps_gaussian(y, mu, s) == pytest.approx(num, rel=1e-6)
    assert crps_gaussian(1.0, 0.0, 0.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        crps_gaussian(0.0, 0.0, -1.0)


def test_crps_from_dense_quantiles_approaches_gaussian_crps():
    levels = (np.arange(999) + 0.5) / 999
    q = stats.norm.ppf(levels, 0.4, 1.3)
    for y in (-2.0, 0.4, 1.7):
        approx = crps_from_quantiles(np.array(y), q, levels)
        assert approx == pytest.approx(crps_gaussian(y, 0.4, 1.3), rel=1e-3)
    # a median-only forecast scores the absolute error
    assert crps_from_quantiles(np.array(3.0), np.array([1.0]), [0.5]) == pytest.approx(2.0)


# ---------------------------------------------------------------------- with a cohort
def _cohort_and_imputed():
    rng = np.random.default_rng(3)
    ids = [f"p{i}" for i in range(6)]
    a = pd.DataFrame(rng.normal(size=(6, 2)), index=ids, columns=["a1", "a2"])
    b = pd.DataFrame(rng.normal(size=(6, 3)), index=ids, columns=["b1", "b2", "b3"])
    truth = twin.Cohort.from_tables({"a": a, "b": b})
    hidden = ["p1", "p4"]
    partial = truth.hide("b", individuals=hidden)
    # a fake impute(): the truth everywhere except a known error on the hidden rows,
    # with its feature axis in another order than the cohort's
    pred = b.copy()
    pred.loc[hidden] += 1.0
    pred.loc[["p0"]] += 50.0  # observed row: must not be scored
    order = ["b3", "b1", "b2"]
    pred = pred[order]
    coords = {"individual": ids, "b_feature": order}
    dims = ("individual", "b_feature")
    ds = xr.Dataset(
        {
            "b": (dims, pred.to_numpy()),
            "b_sd": (dims, np.full(pred.shape, 0.5)),
            "b_q05": (dims, pred.to_numpy() - 0.8),
            "b_q50": (dims, pred.to_numpy()),
            "b_q95": (dims, pred.to_numpy() + 0.8),
            "b_observed": (dims, partial.mask("b")[:, [2, 0, 1]]),
        },
        coords=coords,
    )
    return truth, partial, ds, b, hidden


def test_evaluate_imputation_scores_hidden_entries_only():
    truth, partial, ds, b, hidden = _cohort_and_imputed()
    m = evaluate_imputation(truth, ds, "b")
    assert m["modality"] == "b" and m["n_individuals"] == 2 and m["n_entries"] == 6
    assert m["mae"] == pytest.approx(1.0)
    assert m["coverage"] == 0.0  # every error is 1.0, outside +-0.8
    assert m["interval_width"] == pytest.approx(1.6)
    assert m["crps_gaussian"] == pytest.approx(float(crps_gaussian(1.0, 0.0, 0.5)))
    y = b.loc[hidden].to_numpy()
    direct = imputation_metrics(y, y + 1.0, y + 0.2, y + 1.8)
    assert m["r2"] == pytest.approx(direct["r2"])
    assert m["pearson_r"] == pytest.approx(direct["pearson_r"])
    # the observed row with its +50 error enters when asked to
    all_m = evaluate_imputation(truth, ds, "b", only_hidden=False)
    assert all_m["n_entries"] == 18 and all_m["mae"] > 5


def test_evaluate_imputation_individuals_and_train_mean():
    truth, partial, ds, b, hidden = _cohort_and_imputed()
    m = evaluate_imputation(truth, ds, "b", individuals=["p4"])
    assert m["n_entries"] == 3 and m["n_individuals"] == 1
    train = truth.select([i for i in truth.individuals if i not in hidden])
    mt = evaluate_imputation(truth, ds, "b", train_mean=train)
    y = b.loc[hidden].to_numpy()
    mu = b.drop(index=hidden).to_numpy().mean(axis=0)
    assert mt["r2"] == pytest.approx(1 - 6.0 / ((y - mu) ** 2).sum())
    with pytest.raises(KeyError):
        evaluate_imputation(truth, ds, "b", individuals=["nobody"])
    with pytest.raises(ValueError, match="no entry"):
        evaluate_imputation(truth, ds.assign(b_observed=ds["b_observed"] | True), "b")


def test_hidden_entries_lists_the_scored_entries_on_the_truth_layout():
    truth, partial, ds, b, hidden = _cohort_and_imputed()
    rows = hidden_entries(truth, ds, "b")
    assert sorted(rows["individual"].unique()) == hidden and len(rows) == 6
    for _, r in rows.iterrows():  # matched by id and feature although ds orders them otherwise
        assert r["truth"] == b.loc[r["individual"], r["feature"]]
        assert r["mean"] == pytest.approx(r["truth"] + 1.0)
        assert r["q95"] - r["q05"] == pytest.approx(1.6)
    assert set(rows.columns) == {
        "individual",
        "feature",
        "truth",
        "mean",
        "sd",
        "q05",
        "q50",
        "q95",
    }
    assert len(hidden_entries(truth, ds, "b", only_hidden=False)) == 18


def test_plot_imputed_draws_covered_and_missed_entries():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twin.plot import plot_imputed

    truth, partial, ds, b, hidden = _cohort_and_imputed()
    # widen the interval of feature b1 so that its two entries are covered
    wide = ds.copy()
    wide["b_q05"].loc[{"b_feature": "b1"}] -= 1.0
    ax = plot_imputed(wide, truth, "b")
    covered, missed = ax.containers
    assert len(covered.lines[0].get_xdata()) == 2 and len(missed.lines[0].get_xdata()) == 4
    assert "6 hidden entries, 33% covered" in ax.get_title()
    ax = plot_imputed(wide, truth, "b", features=["b2"])
    assert "2 hidden entries, 0% covered" in ax.get_title()
    with pytest.raises(KeyError, match="q025"):
        plot_imputed(ds, truth, "b", level=0.95)
    with pytest.raises(KeyError, match="not features"):
        plot_imputed(ds, truth, "b", features=["zz"])
    plt.close("all")
