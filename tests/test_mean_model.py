"""Property twins on a regression mean (``mean_model``): cross-fitting, prediction, update.

Simulated batches whose properties are a step function of a setting (which trees fit
and a small latent model smooths) plus a batch effect shared by both properties.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from materials_twin_helpers import fit_on_shared_effect, shared_effect
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.tree import DecisionTreeRegressor

import twin
from twin.materials_twins import PropertyMean, PropertyTwinModel

SMALL = twin.ModalitySpec(encoder_hidden=(16,), decoder_hidden=(16,))


def gbm() -> GradientBoostingRegressor:
    return GradientBoostingRegressor(n_estimators=100, max_depth=2, random_state=0)


@pytest.fixture(scope="module")
def mean_twin() -> PropertyTwinModel:
    model = PropertyTwinModel(
        ["process"], ["props"], latent_dim=1, default_spec=SMALL, mean_model=gbm
    )
    return fit_on_shared_effect(model)


def test_cross_fitted_residuals_have_the_out_of_sample_spread():
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.uniform(0, 1, 300)})
    y = pd.DataFrame(
        {
            "fc_7d": 20 * x["a"] + rng.normal(0, 1, 300),
            "fc_28d": 30 * x["a"] + rng.normal(0, 1, 300),
            "hardness": 5 - x["a"] + rng.normal(0, 1, 300),
        }
    )
    y.iloc[::3, 0] = np.nan  # a property measured for some batches only
    mean = PropertyMean(DecisionTreeRegressor, list(y), {"fc_7d": 7.0, "fc_28d": 28.0})
    assert mean.groups == [("age", ["fc_7d", "fc_28d"]), ("hardness", ["hardness"])]
    residuals = mean.fit(x, y)
    # a fully grown tree reproduces its training data: in-sample residuals would be 0,
    # the cross-fitted ones have about the noise spread (sd sqrt(2) for 1-NN-like trees)
    sd = residuals.std()
    assert (sd > 0.9).all() and (sd < 2.5).all()
    assert residuals["fc_7d"].isna().sum() == 100  # unmeasured stays missing
    # the final estimators are fitted on every batch: the grown trees reproduce them
    pred = mean.predict(x.iloc[:6])
    assert pred.shape == (6, 3)
    measured = y.iloc[:6].to_numpy()
    ok = np.isfinite(measured)
    assert not ok.all() and np.abs(pred[ok] - measured[ok]).max() < 1e-9
    assert "DecisionTreeRegressor" in repr(mean)
    with pytest.raises(ValueError, match="every input"):
        mean.predict(pd.DataFrame({"a": [np.nan]}))
    with pytest.raises(TypeError, match="callable"):
        PropertyMean(DecisionTreeRegressor(), ["x"])


def test_cross_fitting_keeps_groups_together():
    """Three samples per heat share the inputs: split apart, each is predicted from its
    siblings and the residuals shrink to the within-heat noise."""
    rng = np.random.default_rng(1)
    heat_x, heat_effect = rng.uniform(0, 1, 60), rng.normal(0, 3, 60)
    heats = np.repeat(np.arange(60), 3)
    x = pd.DataFrame({"a": heat_x[heats]})
    y = pd.DataFrame({"p": 10 * x["a"] + heat_effect[heats] + rng.normal(0, 0.3, 180)})
    mean = PropertyMean(DecisionTreeRegressor, ["p"])
    split = mean.fit(x, y)["p"].std()
    grouped = mean.fit(x, y, groups=heats)["p"].std()
    assert split < 1.5 < 3.0 < grouped  # grouped: the heat effect (sd 3) is out of sample
    with pytest.raises(ValueError, match="labels"):
        mean.fit(x, y, groups=heats[:10])
    with pytest.raises(ValueError, match="missing labels"):
        mean.fit(x, y, groups=np.where(heats == 3, np.nan, heats))


def test_mean_twin_predicts_from_the_regression_and_updates(mean_twin):
    m = mean_twin
    assert list(m.model.schema.names) == ["props"]  # the latent model holds the deviations
    assert "GradientBoostingRegressor mean + latent deviation" in repr(m)
    test, u = shared_effect(400, 1)
    truth = m.output_frame(test)
    settings = test.select(modalities=["process"])
    pred = m.predict(settings, n_draws=300, seed=0)
    # the mean is the regression's: as good as the trees alone, trained on the same data
    alone = m.mean.predict(m.input_frame(test))
    mean = np.c_[pred["mean"].sel(property="y1").values, pred["mean"].sel(property="y2").values]
    assert np.abs(mean - alone).max() < 0.25  # the deviations' prior mean is about 0
    inside = (truth.to_numpy() >= pred["q05"].values) & (truth.to_numpy() <= pred["q95"].values)
    assert 0.82 <= inside.mean() <= 0.97  # the spread of u (sd 1) + noise, from the residuals
    # measuring y1 reveals u, which sharpens y2 = a b - u
    after = m.predict(test, observed=["y1"], n_draws=300, seed=0)
    y2 = truth["y2"].to_numpy()
    mae_before = np.abs(pred["mean"].sel(property="y2").values - y2).mean()
    mae_after = np.abs(after["mean"].sel(property="y2").values - y2).mean()
    assert mae_after < 0.5 * mae_before
    cover = (y2 >= after["q05"].sel(property="y2").values) & (
        y2 <= after["q95"].sel(property="y2").values
    )
    assert 0.8 <= cover.mean() <= 0.99
    # a measured property is returned as measured, in the summary and in every draw
    y1 = after.sel(property="y1")
    assert bool(y1["observed"].all())
    assert y1["mean"].values == pytest.approx(truth["y1"].to_numpy())
    draws = m.sample(test.select(individuals=list(test.individuals[:3])), ["y1"], n_draws=7)
    assert draws.sel(property="y1").values == pytest.approx(
        np.broadcast_to(truth["y1"].to_numpy()[:3], (7, 3))
    )


def test_mean_twin_ensemble_shares_one_mean(mean_twin):
    cohort, _ = shared_effect(200, 3)
    model = PropertyTwinModel(
        ["process"], ["props"], latent_dim=1, default_spec=SMALL, mean_model=gbm, n_members=2
    ).fit(cohort, seed=0, epochs=20, validation_fraction=0.0)
    assert len(model.members) == 2
    pred = model.predict(cohort.select(modalities=["process"]), n_draws=50, seed=0)
    alone = model.mean.predict(model.input_frame(cohort))
    assert np.abs(pred["mean"].values - alone).mean() < 0.5


def test_mean_twin_refuses_bad_settings(mean_twin):
    with pytest.raises(ValueError, match="choose one"):
        PropertyTwinModel(["process"], ["props"], mean_model=gbm, conditional=True)
    with pytest.raises(TypeError, match="function returning a fresh regressor"):
        PropertyTwinModel(["process"], ["props"], mean_model=gbm())
    test, _ = shared_effect(10, 4)
    with pytest.raises(ValueError, match=r"every input.*'a'"):
        mean_twin.predict(test.hide("process", features=["a"]), n_draws=5)
    with pytest.raises(ValueError, match="there is none"):
        PropertyTwinModel(["process"], ["props"]).fit(test, mean_groups=list(range(10)))
    labels = pd.DataFrame({"grade": ["A", "B"] * 20}, index=[f"i{i}" for i in range(40)])
    settings = pd.DataFrame({"a": np.arange(40.0)}, index=labels.index)
    cohort = twin.Cohort.from_tables({"process": settings, "grades": labels})
    with pytest.raises(ValueError, match="not continuous"):
        PropertyTwinModel(["process"], ["grades"], mean_model=gbm).fit(cohort, epochs=1)
