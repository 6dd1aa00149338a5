"""Training the dynamic model on simulated data: calibration, seeds, effects, priors, persistence."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from dynamic_sim import simulate_cohort

import twin
from twin.cohort.window import observations_before
from twin.model.dynamic_model import DynamicTwinModel
from twin.simulation import contrast

FIT = {"epochs": 100, "lr": 0.05, "progress": False, "seed": 0}


@pytest.fixture(scope="module")
def data():
    """Training individuals and independently simulated held-out individuals."""
    return simulate_cohort(120, seed=0), simulate_cohort(100, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    train, _ = data
    model = DynamicTwinModel(train.schema, latent_dim=2)
    return model.fit(train, **FIT)


def last_value_split(test):
    """History before each individual's last visit, and the values at that visit."""
    t = test.times()
    obs = test.mask("labs").any(-1)
    last = np.where(obs, t, -np.inf).max(1)
    history = observations_before(test, last)
    at_last = (t == last[:, None]) & obs
    y = np.where(at_last[..., None] & test.mask("labs"), test.values("labs"), np.nan)
    truth = np.nanmax(np.where(np.isnan(y), -np.inf, y), axis=1)  # one visit per time here
    truth[np.isinf(truth)] = np.nan
    prev = history
    lv = np.full(truth.shape, np.nan)
    for f in range(2):
        m = prev.mask("labs")[:, :, f]
        idx = np.where(m, np.arange(m.shape[1]), -1).max(1)
        ok = idx >= 0
        lv[ok, f] = prev.values("labs")[ok, idx[ok], f]
    return history, last, truth, lv


def test_held_out_forecasts_are_calibrated_and_beat_the_last_value(fitted, data):
    _, test = data
    history, last, truth, last_value = last_value_split(test)
    twins = fitted.instantiate(history)
    fc = twins.forecast(last[:, None])
    covered, err_model, err_last = [], [], []
    for f, name in enumerate(test.data["labs_feature"].values):
        y = truth[:, f]
        ok = ~np.isnan(y) & ~np.isnan(last_value[:, f])
        lo, hi = fc[f"{name}_q05"].values[ok, 0], fc[f"{name}_q95"].values[ok, 0]
        covered.append((y[ok] >= lo) & (y[ok] <= hi))
        err_model.append(np.abs(fc[f"{name}_q50"].values[ok, 0] - y[ok]))
        err_last.append(np.abs(last_value[ok, f] - y[ok]))
    coverage = np.concatenate(covered).mean()
    assert len(np.concatenate(covered)) > 100
    assert 0.84 <= coverage <= 0.96, coverage
    assert np.concatenate(err_model).mean() < np.concatenate(err_last).mean()


def test_training_learns_the_input_effect(fitted):
    assert fitted.agents == ["drug"]
    eff = fitted.effects(horizons=(90.0,)).set_index("feature")["effect"]
    # the true effect of the drug after 90 days: +2.6 on y1, -2.6 on y2 (H Gamma B)
    assert 1.6 < eff["y1"] < 3.6 and -3.6 < eff["y2"] < -1.6
    assert fitted.module.B_cov.diagonal().min() > 0  # an input posterior was computed
    text = repr(fitted)
    assert "drug" in text and "decay times" in text and "kept epoch" in text


def test_population_contrast_has_the_right_sign_with_an_interval(fitted, data):
    _, test = data
    twins = fitted.instantiate(test)
    scen = [
        twin.Scenario(name="drug", horizon=90, step=30, interventions=[twin.Intervention("drug")]),
        twin.Scenario(name="none", horizon=90, step=30),
    ]
    res = twins.simulate(scen, n_draws=100, seed=0, progress=False)
    ct = contrast(res, "drug", "none", average=True).sel(time=90.0)
    assert float(ct["lower"].sel(feature="y1")) > 0 > float(ct["upper"].sel(feature="y2"))
    width = float(ct["upper"].sel(feature="y1") - ct["lower"].sel(feature="y1"))
    assert 0 < width < 2.0  # B is uncertain, but well informed by 120 individuals


def test_fitting_is_reproducible_with_a_seed(data):
    train, _ = data
    small = train.select(slice(0, 30))
    fits = [
        DynamicTwinModel(small.schema, latent_dim=2).fit(small, epochs=4, progress=False, seed=s)
        for s in (1, 1, 2)
    ]
    a, b, c = (m.module.state_dict() for m in fits)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_mechanistic_prior_pulls_the_learned_effect():
    few = simulate_cohort(30, seed=11, treated_share=0.2)
    spec = {"drug": {"feature": "y1", "mean": 6.0, "sd": 0.2, "at": 90}}
    fit = {**FIT, "epochs": 50}
    plain = DynamicTwinModel(few.schema, latent_dim=2).fit(few, **fit)
    prior = DynamicTwinModel(few.schema, latent_dim=2, prior_effects=spec).fit(few, **fit)
    e_plain = plain.effects(horizons=(90.0,)).set_index("feature").loc["y1", "effect"]
    table = prior.effects(horizons=(90.0,)).set_index("feature")
    e_prior = table.loc["y1", "effect"]
    assert table.loc["y1", "prior_mean"] == 6.0
    # the data (true effect about 2.6) and the prior (6 +- 0.2) are combined: in between
    assert e_plain < e_prior < 6.0
    assert abs(e_prior - 6.0) < 0.67 * abs(e_plain - 6.0)
    with pytest.raises(KeyError, match="not modelled"):
        DynamicTwinModel(
            few.schema,
            agents=["drug"],
            prior_effects={"drug": {"feature": "y7", "mean": 1, "sd": 1}},
        )


def test_save_load_round_trip_and_refusals(fitted, data, tmp_path):
    _, test = data
    path = fitted.save(tmp_path / "dyn")
    meta = json.loads((path / "model.json").read_text())
    assert meta["format"] == "twin.DynamicTwinModel" and meta["schema_hash"] == fitted.schema.hash()
    loaded = DynamicTwinModel.load(path, schema=test.schema)
    a = fitted.instantiate(test).forecast([0.0, 50.0], relative_to="last")
    b = loaded.instantiate(test).forecast([0.0, 50.0], relative_to="last")
    np.testing.assert_array_equal(a["y1_q95"].values, b["y1_q95"].values)
    assert torch.equal(loaded.module.B_cov, fitted.module.B_cov)
    with pytest.raises(FileExistsError, match="overwrite"):
        fitted.save(path)
    # a cohort whose feature is described differently is refused, naming the difference
    other = test.data.copy()
    other["labs_unit"] = ("labs_feature", np.array(["mg/dL", "mmol/L"], dtype=object))
    other = twin.Cohort(other)
    with pytest.raises(ValueError, match="unit"):
        DynamicTwinModel.load(path, schema=other.schema)
    with pytest.raises(ValueError, match="does not match the model"):
        fitted.instantiate(other)
    # damaged weights and foreign folders are refused
    (path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="checksum"):
        DynamicTwinModel.load(path)
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "model.json").write_text(json.dumps({"format": "twin.TwinModel"}))
    with pytest.raises(ValueError, match="not a twin.DynamicTwinModel"):
        DynamicTwinModel.load(tmp_path / "static")


def test_neural_dynamics_behind_the_same_interface(data):
    train, test = data
    small = train.select(slice(0, 30))
    model = DynamicTwinModel(
        small.schema,
        latent_dim=2,
        dynamics="neural",
        neural={"hidden": 8, "epochs": 2, "n_samples": 16, "max_step": 10.0},
    )
    model.fit(small, epochs=3, progress=False)
    assert model.history.stage[-1] == "neural"
    twins = model.instantiate(test.select(slice(0, 5)))
    fc = twins.forecast([10.0, 40.0], relative_to="last")
    assert np.isfinite(fc["y1"].values).all() and (fc["y1_sd"].values > 0).all()
    scen = twin.Scenario(name="none", horizon=30, step=15)
    res = twins.simulate(scen, n_draws=4, seed=0, progress=False)
    assert res["value"].shape == (5, 1, 4, 3, 2) and np.isfinite(res["value"].values).all()


class StubStaticTwins:
    def __init__(self, cohort):
        n = len(cohort)
        rng = np.random.default_rng(0)
        self.individuals = cohort.individuals
        self.loc = torch.as_tensor(rng.normal(size=(n, 3)))
        self.covariance = 0.1 * torch.eye(3).expand(n, 3, 3)


class StubStaticModel:
    """Stands in for a fitted static TwinModel: posterior mean and covariance per individual."""

    latent_dim = 3

    def instantiate(self, cohort):
        return StubStaticTwins(cohort)


def test_covariates_and_a_static_posterior_enter_the_initial_state(data, tmp_path):
    train, test = data
    small = train.select(slice(0, 30))
    cov = small.covariates.assign(age=np.linspace(20, 80, 30), sex=["f", "m"] * 15)
    with_cov = twin.Cohort(
        small.data.assign(
            covariate_age=("individual", cov["age"].to_numpy()),
            covariate_sex=("individual", cov["sex"].to_numpy().astype(object)),
        )
    )
    model = DynamicTwinModel(
        with_cov.schema, latent_dim=2, covariates=["age", "sex"], static_model=StubStaticModel()
    )
    model.fit(with_cov, epochs=3, progress=False)
    assert model.context.columns == ["age", "sex=f", "sex=m"] and model.context_dim == 6
    m0, P0 = model.initial_prior(with_cov)
    assert m0.shape == (30, 2) and not torch.allclose(m0[0], m0[1])
    path = model.save(tmp_path / "m")
    with pytest.raises(ValueError, match="static_model"):
        DynamicTwinModel.load(path)
    again = DynamicTwinModel.load(path, static_model=StubStaticModel())
    np.testing.assert_allclose(again.initial_prior(with_cov)[0], m0)
    with pytest.raises(ValueError, match="covariate 'age'"):
        model.instantiate(small)


def test_input_hessian_rows_batched_and_row_by_row_agree(monkeypatch):
    """The effect posterior's Hessian: one batched backward pass, or row by row where
    batching fails; both equal autograd's Hessian."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    B = torch.randn(2, 3, generator=gen, dtype=torch.float64, requires_grad=True)

    def loglik(b):
        return -(torch.tanh(b @ x) ** 2).sum()

    expected = torch.autograd.functional.hessian(loglik, B.detach()).reshape(6, 6)
    (g,) = torch.autograd.grad(loglik(B), B, create_graph=True)
    torch.testing.assert_close(DynamicTwinModel._jacobian_rows(g.reshape(-1), B), expected)

    grad, batched = torch.autograd.grad, []

    def no_batching(*args, is_grads_batched=False, **kwargs):  # an op without a batch rule
        batched.append(is_grads_batched)
        if is_grads_batched:
            raise RuntimeError("Batching rule not implemented")
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_batching)
    torch.testing.assert_close(DynamicTwinModel._jacobian_rows(g.reshape(-1), B), expected)
    assert batched[0] and not any(batched[1:]) and len(batched) == 7


def test_many_default_agents_get_a_hint_and_a_short_repr():
    rows, ivs = [], []
    for i in range(40):
        for t in (0.0, 30.0, 60.0):
            rows.append({"individual": f"p{i}", "time": t, "feature": "y", "value": i + t / 30})
        ivs.append({"individual": f"p{i}", "agent": f"agent{i:02d}", "start_t": 10.0, "dose": 1.0})
    cohort = twin.Cohort.from_tables(
        longitudinal={"labs": pd.DataFrame(rows)}, interventions=pd.DataFrame(ivs)
    )
    model = DynamicTwinModel(cohort.schema, latent_dim=1)
    with pytest.warns(UserWarning, match="40 intervention agents .* pass agents="):
        model.fit(cohort, epochs=2, progress=False, seed=0)
    assert "agent00, agent01" in repr(model) and "... (40)" in repr(model)
    quiet = DynamicTwinModel(cohort.schema, latent_dim=1, agents=["agent00"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # chosen agents: no hint
        quiet.fit(cohort, epochs=2, progress=False, seed=0)
