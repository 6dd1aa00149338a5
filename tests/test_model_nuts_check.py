"""The NumPyro check: JAX decoders equal the torch ones; amortised vs NUTS posteriors."""

from __future__ import annotations

import copy

import jax
import numpy as np
import pandas as pd
import pytest
import torch

import twin
from twin.model import ModalitySpec, TwinModel
from twin.model.jax_export import export_model, make_log_likelihood, torch_log_likelihood
from twin.model.nuts_check import compare_with_nuts


def simulate_nonlinear(n: int = 300, seed: int = 1) -> twin.Cohort:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    ids = [f"p{k:03d}" for k in range(n)]
    wa, wb = rng.normal(size=(2, 10)), rng.normal(size=(2, 8))
    a = 2 * np.tanh(z @ wa) + 0.3 * rng.normal(size=(n, 10))
    b = z @ wb + 0.5 * (z[:, :1] ** 2) + 0.4 * rng.normal(size=(n, 8))
    return twin.Cohort.from_tables(
        {
            "a": pd.DataFrame(a, index=ids, columns=[f"a{j}" for j in range(10)]),
            "b": pd.DataFrame(b, index=ids, columns=[f"b{j}" for j in range(8)]),
        }
    )


def simulate_mixed(n: int = 120, seed: int = 2) -> twin.Cohort:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    ids = [f"m{k:03d}" for k in range(n)]
    clinical = pd.DataFrame(
        {
            "bmi": 25 + 3 * z + rng.normal(size=n),
            "crp": np.exp(z + rng.normal(size=n)),
            "smoker": rng.random(n) < 1 / (1 + np.exp(-2 * z)),
            "stage": pd.Categorical(np.digitize(z + 0.5 * rng.normal(size=n), [-0.5, 0.5])),
            "visits": rng.poisson(np.exp(1 + 0.5 * z)),
            "events": rng.poisson(np.exp(0.5 * z)),
        },
        index=ids,
    )
    clinical.iloc[::7, 0] = np.nan
    omics = pd.DataFrame(np.outer(z, np.ones(5)) + rng.normal(size=(n, 5)), index=ids)
    omics.columns = [f"g{j}" for j in range(5)]
    return twin.Cohort.from_tables(
        {"clinical": clinical, "omics": omics},
        feature_types={"clinical": {"visits": "count", "events": "count"}},
    )


@pytest.fixture(scope="module")
def small_model():
    cohort = simulate_nonlinear()
    train, test = cohort.split((0.8, 0.2), seed=0)
    spec = ModalitySpec(encoder_hidden=(32,), decoder_hidden=(32,))
    model = TwinModel(cohort.schema, latent_dim=2, default_spec=spec)
    model.fit(train, seed=0, progress=False, epochs=150, patience=30)
    return model, test


def test_jax_log_likelihood_equals_torch_for_every_likelihood():
    cohort = simulate_mixed()
    specs = {
        "clinical": ModalitySpec(continuous="student_t", encoder_hidden=(16,), decoder_hidden=(16,))
    }
    # omics: Bayesian first and last decoder layers (group ARD), exported as posterior means
    spec = ModalitySpec(encoder_hidden=(16,), decoder_hidden=(16,), decoder_weights="group_ard")
    model = TwinModel(cohort.schema, latent_dim=3, specs=specs, default_spec=spec)
    # counts: one negative binomial, one Poisson feature
    model.fit(cohort, seed=0, progress=False, epochs=5, kl_warmup_epochs=2)
    families = {h.family for b in model.module.blocks for h in b.heads}
    assert families == {"student_t", "gaussian", "bernoulli", "categorical", "negative_binomial"}
    partial = cohort.hide("omics", individuals=cohort.individuals[:3])
    data = model.prepare(partial.select(list(cohort.individuals[:6])))
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 6, 3)).astype(np.float32)
    expected = torch_log_likelihood(model, data, z)
    exported = export_model(model)
    for i in (0, 4):  # one individual without, one with the omics block
        fn = make_log_likelihood(
            exported,
            {m: v[i].numpy() for m, v in data.values.items()},
            {m: k[i].numpy() for m, k in data.masks.items()},
        )
        got = np.asarray(jax.vmap(fn)(z[:, i]))
        np.testing.assert_allclose(got, expected[:, i], rtol=2e-4, atol=2e-3)


def test_poisson_counts_export_too():
    cohort = simulate_mixed(n=60)
    spec = ModalitySpec(counts="poisson", encoder_hidden=(8,), decoder_hidden=(8,))
    model = TwinModel(cohort.schema, latent_dim=2, default_spec=spec)
    model.fit(cohort, seed=0, progress=False, epochs=3)
    data = model.prepare(cohort.select(list(cohort.individuals[:2])))
    z = np.zeros((1, 2, 2), dtype=np.float32)
    fn = make_log_likelihood(
        export_model(model),
        {m: v[0].numpy() for m, v in data.values.items()},
        {m: k[0].numpy() for m, k in data.masks.items()},
    )
    assert float(fn(z[0, 0])) == pytest.approx(torch_log_likelihood(model, data, z)[0, 0], rel=2e-4)


def test_amortised_posterior_agrees_with_nuts_and_a_broken_encoder_fails(small_model):
    model, test = small_model
    who = test.individuals[0]
    partial = test.hide("b", individuals=[who])
    report = compare_with_nuts(
        model, partial, who, num_warmup=200, num_samples=500, seed=0, refine_steps=200
    )
    assert report.agrees(0.5), repr(report)
    # the per-individual refinement under the frozen decoders lands on NUTS too
    assert report.refined_mean is not None
    assert report.mean_abs_difference(refined=True) < 0.35
    assert "std diff" in repr(report)
    assert np.all(report.nuts_sd > 0)
    assert 0.4 < float(np.mean(report.sd_ratio)) < 2.5

    broken = copy.deepcopy(model)
    with torch.no_grad():
        for block in broken.module.blocks:
            block.encoder.net[-1].weight.mul_(0.0)  # experts no longer read the data
    bad = compare_with_nuts(broken, partial, who, nuts_samples=report.nuts_samples)
    np.testing.assert_array_equal(bad.nuts_mean, report.nuts_mean)
    assert not bad.agrees(0.5), repr(bad)
    assert bad.mean_abs_difference() > 2 * report.mean_abs_difference()
