"""Property twins of materials: age conversion, derived inputs, PropertyTwinModel.

Concrete rows come from ``tests/data/materials/concrete_excerpt.csv`` (UCI Concrete
Compressive Strength, I-Cheng Yeh, DOI 10.24432/C5PK67, CC BY 4.0; see the README
there).  The statistical test uses synthetic data whose truth is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from materials_twin_helpers import (
    EXCERPT,
    EXCERPT_AGES,
    TINY,
    excerpt_cohort,
    fit_on_shared_effect,
    shared_effect,
    synthetic,
)
from materials_twin_helpers import excerpt_twin as excerpt_model
from materials_twin_helpers import synthetic_twin as synthetic_model

import twin
from twin.materials import (
    ProcessGraph,
    age_feature,
    canonical_ages,
    feature_age,
    read_concrete,
    strength_at_ages,
)
from twin.materials_twins import (
    AUTO_REFINE_STEPS,
    CONCRETE_DERIVED,
    PropertyTwinModel,
    SettingError,
    concrete_twin,
    interpolate_log_age,
)


@pytest.fixture(scope="module")
def excerpt():
    return excerpt_cohort()


@pytest.fixture(scope="module")
def excerpt_twin():
    return excerpt_model()


# ---------------------------------------------------------------------- strength_at_ages
def test_strength_at_ages_pivots_the_excerpt():
    cohort = read_concrete(EXCERPT)
    out = strength_at_ages(cohort)
    names = list(out.features("strength_at_age")["name"])
    assert names == [age_feature(a) for a in (3, 7, 14, 28, 56, 90, 100, 180, 270, 365)]
    assert set(out.features("strength_at_age")["unit"]) == {"MPa"}
    long = read_concrete(EXCERPT).to_long("strength")
    rows = long[long["individual"] == "mix-044ffe49ce"].set_index("t")["value"]
    assert sorted(rows.index) == [3, 14, 28, 56, 100]
    i = list(out.individuals).index("mix-044ffe49ce")
    vals, mask = out.values("strength_at_age")[i], out.mask("strength_at_age")[i]
    for age, value in rows.items():
        j = names.index(age_feature(age))
        assert mask[j] and vals[j] == pytest.approx(value)
    assert mask.sum() == 5 and np.isnan(vals[~mask]).all()
    # 360 days maps to 365; the longitudinal modality is kept; the graph gains the node
    k = list(out.individuals).index("mix-6d03fd54f5")
    assert out.mask("strength_at_age")[k, names.index("fc_365d")]
    report = out.attr_json("twin_age_mapping")
    assert report["mapped"] == {"360": 365.0} and report["dropped"] == {}
    assert "strength" in out.longitudinal_modalities
    graph = ProcessGraph.from_cohort(out)
    assert graph.informs("mix", "strength_at_age") and graph.role("strength_at_age") == "property"


def test_age_mapping_tolerance_drops_and_averages():
    rows = pd.DataFrame(
        {
            "mix_id": ["a"] * 5 + ["b"] * 2,
            "cement": 300.0,
            "blast_furnace_slag": 0.0,
            "fly_ash": 0.0,
            "water": 180.0,
            "superplasticizer": 0.0,
            "coarse_aggregate": 1000.0,
            "fine_aggregate": 800.0,
            "age_days": [1, 28, 91, 120, 360, 28, 28],
            "compressive_strength_mpa": [10.0, 30.0, 40.0, 41.0, 45.0, 20.0, 24.0],
        }
    )
    cohort = read_concrete(rows, duplicates="replicates")
    out = strength_at_ages(cohort, (3, 28, 90, 365))
    v = pd.DataFrame(
        out.values("strength_at_age"), index=out.individuals, columns=["3", "28", "90", "365"]
    )
    assert v.loc["a"].tolist()[1:] == [30.0, 40.0, 45.0] and np.isnan(v.loc["a", "3"])
    assert v.loc["b", "28"] == pytest.approx(22.0)  # two replicate specimens averaged
    report = out.attr_json("twin_age_mapping")
    assert report["mapped"] == {"91": 90.0, "360": 365.0}
    assert report["dropped"] == {"1": 1, "120": 1}
    assert report["n_averaged"] == 1
    strict = strength_at_ages(cohort, (3, 28, 90, 365), tolerance=0.0)
    assert strict.attr_json("twin_age_mapping")["dropped"] == {"1": 1, "91": 1, "120": 1, "360": 1}


def test_strength_at_ages_refuses_bad_arguments(excerpt):
    with pytest.raises(ValueError, match="not a longitudinal"):
        strength_at_ages(excerpt, modality="mix")
    with pytest.raises(ValueError, match="increasing"):
        strength_at_ages(read_concrete(EXCERPT), (28, 7))
    with pytest.raises(ValueError, match="already has"):
        strength_at_ages(excerpt)
    with pytest.raises(KeyError, match="no feature"):
        strength_at_ages(read_concrete(EXCERPT), feature="slump")


def test_age_names_and_canonical_ages():
    assert age_feature(28) == "fc_28d" and feature_age("fc_28d") == 28.0
    assert feature_age(age_feature(2.5, "ft")) == 2.5
    with pytest.raises(ValueError):
        feature_age("fc_28")
    got = canonical_ages([91, 360, 1, 100, 0, np.nan])
    assert got[:2].tolist() == [90.0, 365.0] and got[3] == 100.0
    assert np.isnan(got[[2, 4, 5]]).all()


# ---------------------------------------------------------------------- curves
def test_interpolate_log_age_is_exact_at_knots_and_linear_in_log_age():
    known = np.array([3.0, 7.0, 28.0])
    vals = np.array([[10.0, 20.0, 30.0], [5.0, 5.0, 50.0]])
    out = interpolate_log_age(known, vals, np.array([3.0, 7.0, 28.0, 14.0, 1.0, 112.0]))
    assert out[:, :3] == pytest.approx(vals)
    assert out[0, 3] == pytest.approx(25.0)  # 14 d is halfway between 7 and 28 in log-age
    assert out[0, 4] == 0.0  # extrapolated below 0, floored
    raw = interpolate_log_age(known, vals, np.array([1.0, 112.0]), floor=None)
    assert raw[0, 0] == pytest.approx(10.0 - 10.0 * np.log(3) / np.log(7 / 3))
    assert raw[0, 1] == pytest.approx(40.0) and out[0, 5] == pytest.approx(40.0)
    with pytest.raises(ValueError):
        interpolate_log_age(np.array([7.0, 3.0]), vals[:, :2], np.array([5.0]))


# ---------------------------------------------------------------------- derived inputs
def test_concrete_derived_features_and_settings():
    base = {
        "cement": np.array([300.0, 200.0]),
        "blast_furnace_slag": np.array([100.0, 0.0]),
        "fly_ash": np.array([0.0, 50.0]),
        "water": np.array([180.0, 150.0]),
    }
    cols = CONCRETE_DERIVED.compute(base)
    assert cols["binder"].tolist() == [400.0, 250.0]
    assert cols["water_cement_ratio"].tolist() == pytest.approx([0.6, 0.75])
    known = ["cement", "blast_furnace_slag", "fly_ash", "water", *CONCRETE_DERIVED.names]
    out = CONCRETE_DERIVED.apply_settings(base, {"water_cement_ratio": 0.45}, known)
    assert out["water"].tolist() == pytest.approx([135.0, 90.0])
    assert out["water_cement_ratio"].tolist() == pytest.approx([0.45, 0.45])
    assert out["water_binder_ratio"].tolist() == pytest.approx([135.0 / 400, 90.0 / 250])
    out = CONCRETE_DERIVED.apply_settings(base, {"cement": 400.0, "water_binder_ratio": 0.5}, known)
    assert out["water"].tolist() == pytest.approx([250.0, 225.0])
    zero = CONCRETE_DERIVED.compute({**base, "cement": np.array([0.0, 1.0])})
    assert np.isnan(zero["water_cement_ratio"][0])
    with pytest.raises(SettingError, match="cannot be set"):
        CONCRETE_DERIVED.check_settings(["binder"], known)
    with pytest.raises(SettingError, match="conflict"):
        CONCRETE_DERIVED.check_settings(["water_cement_ratio", "water"], known)
    with pytest.raises(SettingError, match="conflict"):
        CONCRETE_DERIVED.check_settings(["water_cement_ratio", "water_binder_ratio"], known)
    with pytest.raises(SettingError, match="unknown setting"):
        CONCRETE_DERIVED.check_settings(["water_cement"], known)


# ---------------------------------------------------------------------- PropertyTwinModel
def test_property_twin_fit_predict_shapes_and_labels(excerpt, excerpt_twin):
    m = excerpt_twin
    assert m.property_names == [age_feature(a) for a in EXCERPT_AGES]
    assert m.input_names[:7] == [
        "cement",
        "blast_furnace_slag",
        "fly_ash",
        "water",
        "superplasticizer",
        "coarse_aggregate",
        "fine_aggregate",
    ]
    assert m.base_inputs == m.input_names[:7]
    pred = m.predict(excerpt.select(modalities=["mix"]), n_draws=50)
    assert pred["mean"].dims == ("individual", "property")
    assert pred.sizes == {"individual": 14, "property": 8, "input": 10}
    assert set(pred.data_vars) == {"mean", "sd", "q05", "q50", "q95", "observed", "inputs"}
    assert not pred["observed"].values.any() and set(pred["unit"].values) == {"MPa"}
    assert (pred["q05"] <= pred["q50"]).all() and (pred["q50"] <= pred["q95"]).all()
    assert (pred["sd"] > 0).all()
    # a table of base components: derived inputs recomputed, same answer as the cohort
    table = m.input_frame(excerpt)[m.base_inputs]
    from_table = m.predict(table, n_draws=50)
    assert from_table["inputs"].sel(input="water_cement_ratio").values == pytest.approx(
        excerpt.values("mix")[:, 8]
    )
    assert from_table["mean"].values == pytest.approx(pred["mean"].values, rel=1e-5)


def test_property_twin_update_keeps_measurements(excerpt, excerpt_twin):
    m = excerpt_twin
    measured = m.output_frame(excerpt)
    pred = m.predict(excerpt, observed=["fc_3d"], n_draws=50)
    obs = pred["observed"].sel(property="fc_3d").values
    assert obs.sum() == measured["fc_3d"].notna().sum() == 4
    assert pred["mean"].sel(property="fc_3d").values[obs] == pytest.approx(
        measured["fc_3d"].dropna().values
    )
    assert (pred["sd"].sel(property="fc_3d").values[obs] == 0).all()
    all_obs = m.predict(excerpt, observed="all", n_draws=50)
    assert all_obs["observed"].values.sum() == excerpt.mask("strength_at_age").sum()
    table = pd.DataFrame({"fc_28d": [30.0, np.nan]}, index=["x", "y"])
    mixes = m.input_frame(excerpt).iloc[:2][m.base_inputs].set_axis(["x", "y"])
    p = m.predict(mixes, observed=table, n_draws=50)
    assert p["observed"].sel(property="fc_28d").values.tolist() == [True, False]
    by_id = m.predict(mixes, observed=pd.DataFrame({"fc_28d": [25.0]}, index=["y"]), n_draws=50)
    assert by_id["observed"].sel(property="fc_28d").values.tolist() == [False, True]
    assert by_id["mean"].sel(individual="y", property="fc_28d").item() == 25.0
    with pytest.raises(ValueError, match="rows"):
        m.predict(mixes, observed=pd.DataFrame({"fc_28d": [1.0, 2.0, 3.0]}))
    cur = m.curve(mixes, [1, 5, 28, 400], observed=table, n_draws=50)
    assert cur["mean"].dims == ("individual", "age")
    assert cur["extrapolated"].values.tolist() == [True, False, False, True]
    assert cur["mean"].sel(individual="x", age=28.0).item() == pytest.approx(30.0)
    assert (cur["q05"].values <= cur["q95"].values).all()


def test_property_twin_refuses_bad_requests(excerpt, excerpt_twin):
    m = excerpt_twin
    with pytest.raises(SettingError, match="unknown input"):
        m.predict(pd.DataFrame({"cement": [300.0], "slump": [10.0]}))
    with pytest.raises(SettingError, match="are outputs"):
        m.predict(pd.DataFrame({"cement": [300.0], "fc_28d": [10.0]}))
    with pytest.raises(KeyError, match="unknown properties"):
        m.predict(excerpt, observed=["fc_2d"])
    with pytest.raises(RuntimeError, match="not fitted"):
        concrete_twin().predict(excerpt)
    backwards = PropertyTwinModel(["strength_at_age"], ["mix"], latent_dim=2, default_spec=TINY)
    with pytest.raises(ValueError, match="does not let"):
        backwards.fit(excerpt, epochs=1)
    with pytest.raises(ValueError, match="longitudinal"):
        PropertyTwinModel(["mix"], ["strength"]).fit(excerpt, epochs=1)
    with pytest.raises(ValueError, match="both inputs and outputs"):
        PropertyTwinModel(["mix"], ["mix"])


def test_property_twin_ensemble_pools_its_members(excerpt, excerpt_twin):
    """Members are trainings from distinct seeds (the first one the plain model, although
    trained in a worker process here); every prediction comes from the members' pooled
    draws; measurements stay as measured."""
    from twin.materials_twins.property_twin import member_seed

    # the same settings as the one-member excerpt_twin, members in two worker processes
    ens = excerpt_model(n_members=2, n_jobs=2)
    assert len(ens.members) == 2 and ens.model is ens.members[0]
    assert "2 members" in repr(ens)
    plain = excerpt_twin.model.module.state_dict()
    first, second = (m.module.state_dict() for m in ens.members)
    assert all(torch.equal(plain[k], first[k]) for k in plain)
    assert not all(torch.equal(first[k], second[k]) for k in first)

    mixes = excerpt.select(modalities=["mix"])
    draws = ens.sample(mixes, n_draws=10, seed=3)
    for k, block in enumerate((slice(0, 5), slice(5, 10))):
        own = ens.twins(mixes, member=k, seed=member_seed(3, k))
        own = own.sample(n_draws=5, seed=member_seed(3, k))["strength_at_age"].values
        assert draws.values[block] == pytest.approx(own)
    pred = ens.predict(mixes, n_draws=10, seed=3)
    assert pred["mean"].values == pytest.approx(draws.values.mean(0))
    assert pred["q95"].values == pytest.approx(np.quantile(draws.values, 0.95, axis=0))
    assert pred.attrs["n_members"] == 2

    measured = ens.output_frame(excerpt)["fc_28d"].to_numpy()
    upd = ens.predict(excerpt, observed=["fc_28d"], n_draws=20).sel(property="fc_28d")
    seen = np.isfinite(measured)
    assert seen.sum() >= 5
    assert (upd["observed"].values == seen).all()
    assert upd["mean"].values[seen] == pytest.approx(measured[seen])
    assert (upd["sd"].values[seen] == 0).all() and (upd["sd"].values[~seen] > 0).all()

    with pytest.raises(ValueError, match="n_draws"):
        ens.sample(mixes, n_draws=1)
    with pytest.raises(IndexError, match="member"):
        ens.twins(mixes, member=2)
    with pytest.raises(ValueError, match="n_members"):
        concrete_twin(n_members=0)
    grades = pd.DataFrame({"grade": ["low", "high"] * 7}, index=excerpt.individuals)
    with_grade = twin.Cohort.from_tables(
        {
            "mix": pd.DataFrame(
                excerpt.values("mix"),
                index=excerpt.individuals,
                columns=excerpt.features("mix")["name"],
            ),
            "grade": grades,
        }
    )
    with pytest.raises(ValueError, match="categorical outputs"):
        PropertyTwinModel(["mix"], ["grade"], n_members=2).fit(with_grade, epochs=1)


@pytest.fixture(scope="module")
def synthetic_twin():
    return synthetic_model()


def test_property_twin_learns_a_known_relation(synthetic_twin):
    test = synthetic(300, 1)
    m = synthetic_twin
    truth = m.output_frame(test)
    pred = m.predict(test.select(modalities=["process"]), n_draws=300, seed=0)
    err = np.abs(pred["mean"].values - truth.to_numpy())
    baseline = np.abs(truth.to_numpy() - m.output_frame(synthetic(400, 0)).mean().to_numpy())
    # per property well below the mean's error (noise sd 0.3: the best possible MAE is 0.24)
    assert (err.mean(0) < 0.7 * baseline.mean(0)).all()
    assert (err.mean(0) > 0.2).all()
    inside = (truth.to_numpy() >= pred["q05"].values) & (truth.to_numpy() <= pred["q95"].values)
    assert 0.8 <= inside.mean() <= 0.98


def test_property_twin_updates_from_a_measured_property(synthetic_twin):
    """With the setting ``a`` unknown, measuring y1 (= 3a + noise) sharpens y2."""
    test = synthetic(300, 2)
    m = synthetic_twin
    truth = m.output_frame(test)["y2"].to_numpy()
    partial = test.hide("process", features=["a"])
    before = m.predict(partial.select(modalities=["process"]), n_draws=300)
    after = m.predict(partial, observed=["y1"], n_draws=300)
    # partly observed modalities: the posterior is refined ("auto")
    assert before.attrs["refine_steps"] == after.attrs["refine_steps"] == AUTO_REFINE_STEPS
    assert m.predict(test.select(modalities=["process"]), n_draws=10).attrs["refine_steps"] == 0
    y2 = {k: v.sel(property="y2") for k, v in (("before", before), ("after", after))}
    mae_before = np.abs(y2["before"]["mean"].values - truth).mean()
    mae_after = np.abs(y2["after"]["mean"].values - truth).mean()
    # ideal ratio about 0.5 (a known to ~0.1 from y1, noise 0.3); ignoring y1 gives 1
    assert mae_after < 0.65 * mae_before
    assert y2["after"]["sd"].mean() < y2["before"]["sd"].mean()
    inside = (truth >= y2["after"]["q05"].values) & (truth <= y2["after"]["q95"].values)
    assert 0.8 <= inside.mean() <= 0.98
    draws = m.sample(partial, observed=["y1"], n_draws=20)
    assert draws.dims == ("draw", "individual", "property")
    measured = m.output_frame(test)["y1"].to_numpy()
    assert draws.sel(property="y1").values == pytest.approx(np.broadcast_to(measured, (20, 300)))


@pytest.fixture(scope="module")
def conditional_twin():
    spec = twin.ModalitySpec(encoder_hidden=(32,), decoder_hidden=(32, 32))
    model = PropertyTwinModel(
        ["process"], ["props"], latent_dim=2, default_spec=spec, conditional=True
    )
    return fit_on_shared_effect(model)


def test_conditional_twin_predicts_from_inputs_and_updates(conditional_twin):
    m = conditional_twin
    assert list(m.model.schema.names) == ["props"]  # inputs act as decoder covariates
    assert list(m.model.covariate_encoder.names) == ["a", "b"]
    assert m.input_names == ["a", "b"] and m.property_names == ["y1", "y2"]
    assert "conditional" in repr(m)
    test, _ = shared_effect(400, 1)
    truth = m.output_frame(test)
    # from the settings alone: the truth's spread is the shared effect (sd 1) + noise
    pred = m.predict(test.select(modalities=["process"]), n_draws=300, seed=0)
    inside = (truth.to_numpy() >= pred["q05"].values) & (truth.to_numpy() <= pred["q95"].values)
    assert 0.82 <= inside.mean() <= 0.97
    # measuring y1 reveals u (y1 - sin(3a)), which sharpens y2 = a b - u
    after = m.predict(test, observed=["y1"], n_draws=300, seed=0).sel(property="y2")
    y2 = truth["y2"].to_numpy()
    mae_before = np.abs(pred["mean"].sel(property="y2").values - y2).mean()
    mae_after = np.abs(after["mean"].values - y2).mean()
    assert mae_after < 0.5 * mae_before  # ideal about 0.25 (noise 0.2 x sqrt 2 vs sd 1)
    cover = (y2 >= after["q05"].values) & (y2 <= after["q95"].values)
    assert 0.8 <= cover.mean() <= 0.99  # measured 0.978 (seed 0)


def test_conditional_twin_warns_on_missing_inputs_and_checks_units(conditional_twin):
    m = conditional_twin
    test, _ = shared_effect(20, 2)
    with pytest.warns(UserWarning, match="training mean"):
        m.predict(test.hide("process", features=["a"]).select(modalities=["process"]), n_draws=5)
    bad = twin.Cohort.from_tables(
        {"process": pd.DataFrame({"a": [0.5], "b": [0.5]}, index=["x"])},
        feature_info={"process": {"a": {"unit": "K"}}},
    )
    with pytest.raises(ValueError, match="unit"):
        m.predict(bad, n_draws=5)
