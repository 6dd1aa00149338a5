"""Processing scenarios (sweep) and inverse design with property twins.

The concrete twin is fitted on ``tests/data/materials/concrete_excerpt.csv`` (UCI
Concrete Compressive Strength, I-Cheng Yeh, DOI 10.24432/C5PK67, CC BY 4.0) for shapes
and labels only; the inverse-design checks use a synthetic monotone relation.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from materials_twin_helpers import excerpt_cohort, excerpt_twin

import twin
from twin.materials import ProcessGraph
from twin.materials_twins import (
    DerivedFeature,
    DerivedFeatures,
    PropertyTwinModel,
    SettingError,
    inverse_design,
    nearest_batches,
    settings_table,
    sweep,
)
from twin.scenario import Scenario, load_scenarios

ROOT = Path(__file__).resolve().parents[1]
SWEEP_YAML = ROOT / "scenarios" / "concrete_wc_sweep.yaml"


# ---------------------------------------------------------------------- sweep
def test_sweep_runs_the_concrete_yaml():
    model = excerpt_twin()
    base = model.input_frame(excerpt_cohort()).iloc[0][model.base_inputs]
    ds = sweep(model, base, SWEEP_YAML, n_draws=50, ages="scenario")
    names = [s.name for s in load_scenarios(SWEEP_YAML)]
    assert list(ds["scenario"].values) == names and len(names) == 9
    assert ds["mean"].dims == ("scenario", "property")
    assert list(ds["property"].values) == model.property_names
    assert list(ds["setting"].values) == ["water_cement_ratio", "fly_ash"]
    inputs = ds["inputs"].to_pandas()
    assert (inputs["cement"] == base["cement"]).all()  # w/c changes the water, not the cement
    wc = ds["settings"].sel(setting="water_cement_ratio").values
    assert inputs["water"].to_numpy() == pytest.approx(wc * base["cement"])
    assert inputs["water_cement_ratio"].to_numpy() == pytest.approx(wc)
    assert inputs["fly_ash"].to_numpy() == pytest.approx(
        ds["settings"].sel(setting="fly_ash").values
    )
    binder = inputs["cement"] + inputs["blast_furnace_slag"] + inputs["fly_ash"]
    assert inputs["binder"].to_numpy() == pytest.approx(binder.to_numpy())
    assert list(ds["age"].values) == [1, 3, 7, 14, 28, 56, 90, 180, 365]
    assert ds["curve_q05"].dims == ("scenario", "age")
    assert (ds["curve_q05"] <= ds["curve_q95"]).all()
    # the same predictions as the model's own forward pass for those inputs
    direct = model.predict(inputs, n_draws=50)
    assert ds["mean"].values == pytest.approx(direct["mean"].values, rel=1e-5)


def test_sweep_grid_several_bases_and_errors():
    model = excerpt_twin()
    bases = model.input_frame(excerpt_cohort()).iloc[:3]
    ds = sweep(model, bases, {"cement": [250, 350], "superplasticizer": [0, 5]}, n_draws=30)
    assert ds["mean"].dims == ("scenario", "base", "property")
    assert ds.sizes["scenario"] == 4 and ds.sizes["base"] == 3
    assert list(ds["scenario"].values)[0] == "cement=250,superplasticizer=0"
    assert (ds["inputs"].sel(input="cement").values[:2] == 250).all()
    table, _ = settings_table({"cement": [300.0]})
    assert table.loc["cement=300", "cement"] == 300.0
    bad = [
        Scenario("ok", horizon=28, settings={"cement": 300}),
        Scenario("typo", horizon=28, settings={"water_cement": 0.4}),
    ]
    with pytest.raises(SettingError, match="scenario 'typo'.*unknown setting"):
        sweep(model, bases.iloc[0], bad)
    with pytest.raises(SettingError, match="cannot be set"):
        sweep(model, bases.iloc[0], {"binder": [400]})
    with pytest.raises(SettingError, match="conflict"):
        sweep(model, bases.iloc[0], pd.DataFrame({"water": [150.0], "water_cement_ratio": [0.4]}))


def test_sweep_flags_settings_away_from_the_data():
    model = excerpt_twin()
    base = model.input_frame(excerpt_cohort()).iloc[0][model.base_inputs]
    train = model.training_inputs
    inside = float(train["cement"].median())
    beyond = float(train["cement"].max()) * 3
    with pytest.warns(UserWarning, match=rf"scenario\(s\) \['cement={beyond:g}'\].*extrapolations"):
        ds = sweep(model, base, {"cement": [inside, beyond]}, n_draws=20)
    assert ds["outside_range"].dims == ("scenario", "input")
    flags = ds["outside_range"].to_pandas()
    assert not flags.iloc[0]["cement"] and flags.iloc[1]["cement"]
    assert flags.iloc[1]["binder"]  # derived inputs follow (cement is part of the binder)
    assert (
        not flags.drop(columns=["cement", "binder", "water_cement_ratio", "water_binder_ratio"])
        .any()
        .any()
    )
    distance = ds["distance"].values
    assert distance[1] > distance[0] and ds["outside_data"].values.tolist() == [False, True]


# ---------------------------------------------------------------------- inverse design
def _monotone(n: int, seed: int) -> twin.Cohort:
    """Settings a, b ~ U(0, 1), derived total = a + b and ratio = b / (a + 0.5);
    strength y = 10 a + 5 b + N(0, 0.3)."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    ids = [f"m{seed}-{i}" for i in range(n)]
    proc = pd.DataFrame({"a": a, "b": b, "total": a + b, "ratio": b / (a + 0.5)}, index=ids)
    props = pd.DataFrame({"y": 10 * a + 5 * b + rng.normal(0, 0.3, n)}, index=ids)
    graph = ProcessGraph({"process": "processing", "props": "property"}, [("process", "props")])
    return graph.attach(twin.Cohort.from_tables({"process": proc, "props": props}))


DERIVED = DerivedFeatures(
    [
        DerivedFeature("total", ("a", "b"), lambda a, b: a + b),
        DerivedFeature(
            "ratio",
            ("b", "a"),
            lambda b, a: b / (a + 0.5),
            adjusts="b",
            solve=lambda r, b, a: r * (a + 0.5),
        ),
    ]
)


@functools.cache
def monotone_twin() -> PropertyTwinModel:
    spec = twin.ModalitySpec(encoder_hidden=(32,), decoder_hidden=(32,))
    model = PropertyTwinModel(
        ["process"], ["props"], latent_dim=2, default_spec=spec, derived=DERIVED
    )
    return model.fit(
        _monotone(400, 0),
        seed=0,
        epochs=150,
        batch_size=200,
        lr=5e-3,
        kl_warmup_epochs=20,
        validation_fraction=0.0,
    )


SEARCH = {"n_candidates": 256, "n_iterations": 6, "n_draws": 128, "n_draws_final": 1000}


def test_inverse_design_meets_target_within_bounds_and_beats_a_feasible_baseline():
    model = monotone_twin()
    bounds = {"a": (0.0, 1.0), "b": (0.1, 1.0)}
    res = inverse_design(
        model,
        {"y": 6.0},
        0.9,
        cost={"a": 1.0, "b": 1.0},
        bounds=bounds,
        reference=_monotone(50, 3),
        seed=0,
        **SEARCH,
    )
    x = res.inputs
    assert res.feasible and res.probability >= 0.9
    for k, (lo, hi) in bounds.items():
        assert lo <= x[k] <= hi
    assert x["total"] == pytest.approx(x["a"] + x["b"])  # derived input recomputed
    assert x["ratio"] == pytest.approx(x["b"] / (x["a"] + 0.5))
    # the model's own forward prediction, with draws the search never saw
    own = model.probability(x.to_frame().T, {"y": 6.0}, n_draws=4000, seed=123)[0]
    assert own >= 0.87
    baseline = pd.DataFrame({"a": [1.0], "b": [1.0]})
    assert model.probability(baseline, {"y": 6.0}, n_draws=1000)[0] >= 0.9  # feasible
    assert res.cost < 2.0 - 0.5  # far cheaper than the all-maximum baseline (cost 2)
    assert x["b"] < 0.3  # a buys strength at half b's price: little b is used
    assert res.prediction["mean"].sel(property="y").item() > 6.0
    assert len(res.nearest) == 5 and res.nearest["distance"].is_monotonic_increasing
    assert "measured_y" in res.nearest.columns
    d = res.to_dict()
    assert d["feasible"] and set(d["prediction"]["y"]) >= {"mean", "q05", "q95"}
    assert {"iteration", "max_probability"} <= set(res.history.columns)


def test_inverse_design_stays_near_the_data():
    model = monotone_twin()
    train = _monotone(400, 0)
    res = inverse_design(model, {"y": 6.0}, 0.9, cost="a", max_distance=0.05, seed=0, **SEARCH)
    near = nearest_batches(model, res.inputs, train, ["y"], n=1)
    assert res.max_distance == 0.05 and near["distance"].iloc[0] <= 0.05 + 1e-9
    auto = inverse_design(model, {"y": 6.0}, 0.9, cost="a", seed=0, **SEARCH)
    assert 0 < auto.max_distance < 0.5  # 400 points in the unit square are dense
    free = inverse_design(model, {"y": 6.0}, 0.9, cost="a", max_distance=None, seed=0, **SEARCH)
    assert free.max_distance is None
    with pytest.raises(ValueError, match="max_distance"):
        inverse_design(model, {"y": 6.0}, 0.9, cost="a", max_distance="near", **SEARCH)


def test_inverse_design_fixed_inputs_and_derived_settings():
    model = monotone_twin()
    res = inverse_design(model, {"y": 5.0}, 0.8, cost="a", fixed={"b": 0.5}, seed=1, **SEARCH)
    assert res.inputs["b"] == 0.5 and res.feasible
    res = inverse_design(model, {"y": 5.0}, 0.8, cost="a", fixed={"ratio": 0.5}, seed=1, **SEARCH)
    assert res.inputs["b"] == pytest.approx(0.5 * (res.inputs["a"] + 0.5))
    res = inverse_design(model, {"y": 50.0}, 0.9, cost="a", seed=0, **SEARCH)
    assert not res.feasible and "no candidate" in res.message


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"cost": "c"}, SettingError, "unknown cost input"),
        ({"cost": "a", "bounds": {"c": (0, 1)}}, SettingError, "unknown bounded input"),
        ({"cost": "a", "fixed": {"zz": 1.0}}, SettingError, "unknown fixed input"),
        (
            {"cost": "a", "fixed": {"b": 0.5}, "bounds": {"b": (0.6, 1.0)}},
            SettingError,
            "outside its bounds",
        ),
        ({"cost": "a", "fixed": {"b": 5.0}}, SettingError, "outside the training range"),
        ({"cost": "a", "bounds": {"a": (0.8, 0.2)}}, SettingError, "empty"),
        ({"cost": "a", "fixed": {"total": 1.0}}, SettingError, "cannot be set"),
        ({"cost": "a", "fixed": {"a": 0.5, "b": 0.5}}, SettingError, "nothing to design"),
        ({"cost": "a", "probability": 1.5}, ValueError, "probability"),
        ({"cost": "a", "target": {"y9": 1.0}}, KeyError, "unknown target"),
    ],
)
def test_inverse_design_clear_errors(kwargs, error, fragment):
    args = {"target": {"y": 5.0}, "probability": 0.9, **kwargs}
    with pytest.raises(error, match=fragment):
        inverse_design(monotone_twin(), args.pop("target"), args.pop("probability"), **args)
