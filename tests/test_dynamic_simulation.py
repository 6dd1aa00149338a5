"""Scenario simulation of longitudinal twins: labels, seeds, chunking, contrasts, plots."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from dynamic_sim import M0, P0, QC, A, B, C, H, R, b, discretize, simulate_cohort
from matplotlib.collections import PathCollection, PolyCollection

import twin
from twin.model.dynamic_model import DynamicTwinModel
from twin.simulation import contrast, simulate_twins, summarise_simulation

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def twins():
    cohort = simulate_cohort(7, seed=5)
    model = DynamicTwinModel.from_matrices(
        cohort.schema, A=A, H=H, R=R, m0=M0, P0=P0, Qc=QC, B=B, b=b, c=C, agents=["drug"]
    )
    return model.instantiate(cohort)


SCENARIOS = [
    twin.Scenario(
        name="drug", horizon=90, step=10, interventions=[twin.Intervention(agent="drug")]
    ),
    twin.Scenario(name="none", horizon=90, step=10),
]


def test_simulation_dims_labels_and_summary(twins):
    res = twins.simulate(SCENARIOS, n_draws=30, seed=0, progress=False)
    assert res["value"].dims == ("individual", "scenario", "draw", "time", "feature")
    assert res["value"].shape == (7, 2, 30, 10, 2)
    assert list(res["scenario"].values) == ["drug", "none"]
    assert list(res["feature"].values) == ["y1", "y2"]
    np.testing.assert_allclose(res["time"].values, np.arange(0, 91, 10))
    np.testing.assert_allclose(res["t"].values, twins.time[:, None] + res["time"].values[None])
    assert list(res["unit"].values) == ["mmol/L", "mmol/L"]
    assert np.isfinite(res["value"].values).all()
    summary = summarise_simulation(res)
    assert set(summary.data_vars) == {"mean", "sd", "q05", "q50", "q95"}
    assert (summary["q05"] <= summary["q50"]).all() and (summary["q50"] <= summary["q95"]).all()
    # the draws start from the current posterior: their spread matches the forecast's
    fc = twins.forecast([30.0], relative_to="last")
    # the forecast continues the recorded (ongoing) drug; so does keep_recorded
    big = twins.simulate(SCENARIOS[1], n_draws=4000, seed=1, progress=False, keep_recorded=True)
    sim_sd = big["value"].sel(time=30.0, feature="y1").std("draw").values[:, 0]
    np.testing.assert_allclose(sim_sd, fc["y1_sd"].values[:, 0], rtol=0.08)
    sim_mean = big["value"].sel(time=30.0, feature="y1").mean("draw").values[:, 0]
    np.testing.assert_allclose(
        sim_mean, fc["y1"].values[:, 0], atol=4 * fc["y1_sd"].values[:, 0].max() / 60
    )


def test_results_reproducible_by_seed_and_invariant_to_chunking(twins):
    a = twins.simulate(SCENARIOS, n_draws=20, seed=7, progress=False)
    again = twins.simulate(SCENARIOS, n_draws=20, seed=7, progress=False)
    small = simulate_twins(twins, SCENARIOS, n_draws=20, seed=7, max_elements=64, progress=False)
    other = twins.simulate(SCENARIOS, n_draws=20, seed=8, progress=False)
    np.testing.assert_array_equal(a["value"].values, again["value"].values)
    np.testing.assert_array_equal(a["value"].values, small["value"].values)
    assert not np.array_equal(a["value"].values, other["value"].values)


def test_contrast_recovers_the_known_input_effect(twins):
    res = twins.simulate(SCENARIOS, n_draws=50, seed=0, progress=False)
    ct = contrast(res, "drug", "none")
    # the exact response of a step input started at day 0: H Gamma(tau) B
    for tau in (10.0, 50.0, 90.0):
        _, _, G = discretize(A, QC, tau)
        effect = H @ G @ B[:, 0]
        got = ct["mean"].sel(time=tau).values  # (individual, feature)
        np.testing.assert_allclose(got, np.broadcast_to(effect, got.shape), rtol=1e-7, atol=1e-9)
    assert float(ct["mean"].sel(time=0.0).max()) == 0.0
    # paired draws and a fixed input matrix: the difference carries no noise
    np.testing.assert_allclose(ct["lower"].values, ct["upper"].values, atol=1e-9)
    assert (ct["prob_positive"].sel(feature="y1", time=90.0) == 1.0).all()
    avg = contrast(res, "drug", "none", average=True)
    assert avg["mean"].dims == ("time", "feature")
    with pytest.raises(KeyError, match="no scenario"):
        contrast(res, "drug", "placebo")


def test_origin_reference_masks_times_before_the_current_time(twins):
    sc = twin.Scenario(name="late", horizon=400, output_times=[0.0, 100.0, 400.0])
    res = twins.simulate(sc, n_draws=5, seed=0, origin="reference", progress=False)
    before = res["time"].values[None, :] < twins.time[:, None]
    vals = res["value"].isel(scenario=0, draw=0, feature=0).values
    assert np.isnan(vals[before]).all() and np.isfinite(vals[~before]).all()
    assert np.isnan(res["t"].values[before]).all()


def test_scenarios_the_model_cannot_run_are_refused(twins):
    unknown = twin.Scenario(
        name="x", horizon=10, interventions=[twin.Intervention(agent="aspirin")]
    )
    with pytest.raises(ValueError, match="aspirin"):
        twins.simulate(unknown, n_draws=2)
    materials = twin.Scenario(name="wc", horizon=10, settings={"water_cement": 0.4})
    with pytest.raises(ValueError, match="static settings"):
        twins.simulate(materials, n_draws=2)


def test_scenarios_from_yaml_and_exposure_delay(twins, tmp_path):
    path = tmp_path / "s.yaml"
    twin.scenario.dump_scenarios(SCENARIOS, path)
    res = twins.simulate(path, n_draws=3, seed=0, progress=False, observation_noise=False)
    assert list(res["scenario"].values) == ["drug", "none"]
    # an onset delay of the agent shifts its response later
    model = twins.model
    model.agent_exposure = {"drug": {"delay": 30.0}}
    try:
        delayed = twins.simulate(path, n_draws=3, seed=0, progress=False)
    finally:
        model.agent_exposure = {}
    ct = contrast(delayed, "drug", "none")
    assert float(abs(ct["mean"].sel(time=30.0)).max()) == 0.0
    assert float(ct["mean"].sel(time=40.0, feature="y1").min()) > 0.0


def test_plot_draws_observations_forecast_and_scenario_bands(twins):
    import matplotlib.pyplot as plt

    ax = twins.plot(0, "y1")
    assert any(isinstance(c, PathCollection) for c in ax.collections)  # observed points
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1  # forecast band
    assert len(ax.get_lines()) >= 2  # median and current-time marker
    plt.close(ax.figure)
    ax = twins.plot(twins.individuals[1], "y2", scenarios=SCENARIOS, n_draws=20)
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2  # one per scenario
    labels = [line.get_label() for line in ax.get_lines()]
    assert any("drug" in lab for lab in labels) and any("none" in lab for lab in labels)
    plt.close(ax.figure)
    with pytest.raises(KeyError):
        twins.plot(0, "y9")


def test_times_after_a_recorded_death_are_flagged_and_kept(twins):
    """A scenario is counterfactual: trajectories go on past a recorded death, flagged and
    warned about, and the values equal those of the same twins without the death."""
    plain = twins.simulate(SCENARIOS, n_draws=20, seed=0, progress=False)
    assert not plain["after_death"].values.any()
    dead = twins[:]
    dead.death_time = np.full(len(dead), np.nan)
    dead.death_time[2] = twins.time[2] + 45.0
    with pytest.warns(UserWarning, match=r"1 twin\(s\) have a recorded death.*'p002'"):
        res = dead.simulate(SCENARIOS, n_draws=20, seed=0, progress=False)
    flags = res["after_death"].values
    assert flags[2].tolist() == (res["time"].values > 45.0).tolist()
    assert not np.delete(flags, 2, axis=0).any()
    np.testing.assert_array_equal(res["value"].values, plain["value"].values)
    assert summarise_simulation(res)["after_death"].dims == ("individual", "time")
