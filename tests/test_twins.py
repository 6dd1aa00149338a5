"""Twins: instantiate from partial cohorts, impute (observed kept, calibrated), latent, sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from model_helpers import simulate_clinical_omics

import twin
from twin.model import ModalitySpec, TwinModel
from twin.twins import Twins, quantile_suffix


@pytest.fixture(scope="module")
def fitted():
    cohort = simulate_clinical_omics()
    train, test = cohort.split((0.75, 0.25), seed=0)
    spec = ModalitySpec(encoder_hidden=(32,), decoder_hidden=(32,))
    model = TwinModel(cohort.schema, latent_dim=4, default_spec=spec)
    model.fit(train, seed=0, progress=False, epochs=200, patience=30, lr=5e-3)
    return model, train, test


def test_model_ignores_longitudinal_modalities(fitted):
    model, _, _ = fitted
    assert model.modalities == ["clinical", "omics"]
    assert "labs" not in model.schema


def test_impute_keeps_observed_values_and_flags_them(fitted):
    model, _, test = fitted
    partial = test.hide("omics", individuals=test.individuals[:10])
    ds = model.instantiate(partial).impute(n_draws=200, seed=0)
    assert isinstance(ds, xr.Dataset)
    for m in ("clinical", "omics"):
        for suffix in ("", "_sd", "_q05", "_q50", "_q95", "_observed"):
            assert ds[f"{m}{suffix}"].dims == ("individual", f"{m}_feature")
        np.testing.assert_array_equal(
            ds[f"{m}_feature"].values, partial.data[f"{m}_feature"].values
        )
        obs = partial.mask(m)
        np.testing.assert_array_equal(ds[f"{m}_observed"].values, obs)
        vals = partial.values(m)
        np.testing.assert_array_equal(ds[m].values[obs], vals[obs])  # bit for bit
        np.testing.assert_array_equal(ds[f"{m}_q05"].values[obs], vals[obs])
        assert (ds[f"{m}_sd"].values[obs] == 0).all()
    np.testing.assert_array_equal(ds["individual"].values, partial.individuals)
    assert not np.isnan(ds["omics"].values).any()
    hidden = ~partial.mask("omics")
    assert (ds["omics_sd"].values[hidden] > 0).all()
    q05, q50, q95 = (ds[f"omics_q{k}"].values[hidden] for k in ("05", "50", "95"))
    assert (q05 < q50).all() and (q50 < q95).all()


def test_quantile_levels_outside_0_1_are_refused_by_name(fitted):
    model, _, test = fitted
    twins = model.instantiate(test)
    for bad in ((0.5, 1.2), (), (0.0,)):
        with pytest.raises(ValueError, match=r"quantile levels must be in \(0, 1\)"):
            twins.impute(n_draws=20, quantiles=bad)


def test_impute_mixed_types_follow_the_documented_conventions(fitted):
    model, _, test = fitted
    partial = test.hide("clinical")
    ds = model.instantiate(partial).impute(n_draws=200, seed=0)
    feats = list(ds["clinical_feature"].values)
    col = {f: ds["clinical"].values[:, feats.index(f)] for f in feats}
    # binary: probability of 1
    assert ((col["smoker"] >= 0) & (col["smoker"] <= 1)).all()
    # categorical: the code of the most probable level, with level probabilities
    stage = feats.index("stage")
    proba = ds["clinical_proba"].values[:, stage, :]
    np.testing.assert_allclose(proba.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(col["stage"], proba.argmax(-1))
    assert np.isnan(ds["clinical_sd"].values[:, stage]).all()
    assert np.isnan(ds["clinical_proba"].values[:, feats.index("bmi"), :]).all()
    # counts: integer quantiles
    q95 = ds["clinical_q95"].values[:, feats.index("admissions")]
    np.testing.assert_array_equal(q95, np.round(q95))
    # observed categorical entries come back one-hot
    ds_obs = model.instantiate(test).impute(n_draws=50)
    p = ds_obs["clinical_proba"].values[:, stage, :]
    np.testing.assert_array_equal(p.argmax(-1), test.values("clinical")[:, stage])
    assert set(np.unique(p)) == {0.0, 1.0}


def test_hidden_categorical_and_continuous_are_predicted_from_omics(fitted):
    model, train, test = fitted
    partial = test.hide("clinical")
    ds = model.instantiate(partial).impute(n_draws=200, seed=0)
    feats = list(ds["clinical_feature"].values)
    truth = test.values("clinical")
    stage = feats.index("stage")
    majority = np.bincount(train.values("clinical")[:, stage].astype(int)).argmax()
    acc = (ds["clinical"].values[:, stage] == truth[:, stage]).mean()
    assert acc > (truth[:, stage] == majority).mean() + 0.15
    bmi = feats.index("bmi")
    r = np.corrcoef(ds["clinical"].values[:, bmi], truth[:, bmi])[0, 1]
    assert r > 0.6
    smoker = feats.index("smoker")
    p = ds["clinical"].values[:, smoker]
    y = truth[:, smoker]
    assert p[y == 1].mean() > p[y == 0].mean() + 0.15


def test_intervals_cover_held_out_values(fitted):
    model, _, test = fitted
    ds = model.instantiate(test.hide("omics")).impute(n_draws=300, seed=0)
    y, ok = test.values("omics"), test.mask("omics")
    inside = (y >= ds["omics_q05"].values) & (y <= ds["omics_q95"].values)
    assert 0.8 <= inside[ok].mean() <= 0.97


def test_partial_cohort_with_a_missing_modality(fitted):
    model, _, test = fitted
    only_omics = test.select(modalities=["omics"])
    twins = model.instantiate(only_omics)
    ds = twins.impute(n_draws=50)
    assert not ds["clinical_observed"].values.any()
    assert ds["clinical"].shape == (len(test), 5)
    # a cohort with fewer features: the rest are imputed
    fewer = test.select(features={"omics": ["gene0", "gene3"]})
    ds2 = model.instantiate(fewer).impute(n_draws=50)
    assert ds2["omics_observed"].values[:, 1].sum() == 0
    assert ds2["omics_observed"].values[:, 3].sum() == fewer.mask("omics")[:, 1].sum()


def test_instantiate_refuses_unknown_features_and_changed_types(fitted):
    model, _, test = fitted
    extra = test.data["omics"].to_pandas()
    extra["new_gene"] = 1.0
    bad = twin.Cohort.from_tables({"omics": extra})
    with pytest.raises(ValueError, match="new_gene"):
        model.instantiate(bad)
    clin = test.data["clinical"].to_pandas()
    typed = twin.Cohort.from_tables(
        {"clinical": clin}, feature_types={"clinical": {"admissions": "continuous"}}
    )
    with pytest.raises(ValueError, match="admissions"):
        model.instantiate(typed)
    labs = pd.DataFrame(
        {
            "individual": ["a"],
            "time": pd.to_datetime(["2020-01-01"]),
            "feature": ["gene0"],
            "value": [1.0],
        }
    )
    with pytest.raises(ValueError, match="longitudinal"):
        model.instantiate(twin.Cohort.from_tables(longitudinal={"omics": labs}))


def test_latent_summary_and_uncertainty(fitted):
    model, _, test = fitted
    full = model.instantiate(test).latent()
    assert full["mean"].dims == ("individual", "latent")
    assert full.sizes == {"individual": len(test), "latent": 4}
    nothing = test.hide("omics").hide("clinical")
    empty = model.instantiate(nothing).latent()
    # with nothing observed the posterior is the prior
    np.testing.assert_allclose(empty["sd"].values, 1.0, rtol=1e-5)
    np.testing.assert_allclose(empty["mean"].values, 0.0, atol=1e-6)
    assert float(full["sd"].mean()) < 0.8


def test_sample_draws_and_seeds(fitted):
    model, _, test = fitted
    twins = model.instantiate(test.hide("omics", individuals=test.individuals[:5]))
    s1 = twins.sample(n_draws=20, seed=1)
    s2 = twins.sample(n_draws=20, seed=1)
    s3 = twins.sample(n_draws=20, seed=2)
    assert s1["omics"].dims == ("draw", "individual", "omics_feature")
    assert s1["z"].shape == (20, len(test), 4)
    xr.testing.assert_identical(s1, s2)
    assert not np.array_equal(s1["omics"].values, s3["omics"].values)
    obs = twins.data.masks["omics"].numpy()
    vals = test.values("omics")
    for d in (0, 19):
        np.testing.assert_array_equal(s1["omics"].values[d][obs], vals[obs])
    assert s1["omics"].values[:, :5].std(0).min() > 0
    xr.testing.assert_identical(twins.impute(n_draws=30, seed=4), twins.impute(n_draws=30, seed=4))


def test_twins_container_protocol(fitted):
    model, _, test = fitted
    twins = model.instantiate(test)
    assert isinstance(twins, Twins) and len(twins) == len(test)
    ids = list(test.individuals[[2, 0]])
    sub = twins[ids]
    assert list(sub.individuals) == ids
    np.testing.assert_array_equal(sub.loc.numpy(), twins.loc[[2, 0]].numpy())
    assert len(twins[1:4]) == 3
    assert len(twins[np.arange(len(test)) % 2 == 0]) == (len(test) + 1) // 2
    assert list(twins[ids[0]].individuals) == [ids[0]]
    with pytest.raises(KeyError, match="nobody"):
        twins["nobody"]
    text = repr(twins)
    assert f"{len(test)} individuals" in text and "latent_dim 4" in text and "omics" in text
    assert twins.covariance.shape == (len(test), 4, 4)


def test_quantile_names():
    assert [quantile_suffix(q) for q in (0.05, 0.5, 0.95, 0.025)] == ["q05", "q50", "q95", "q025"]
    with pytest.raises(ValueError):
        quantile_suffix(1.0)
