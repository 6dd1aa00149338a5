"""Linear-Gaussian case: the posterior of z under the trained decoders is closed-form.

With linear decoders and Gaussian likelihoods, ``z | x_observed`` is Gaussian with
precision ``I + sum_m tau_m A_m^T D_m A_m`` and mean ``Sigma sum_m tau_m A_m^T D_m r_m``
(``A_m``: modality m's decoder map from z restricted to observed entries, ``D_m``:
inverse noise variances, ``r_m``: the standardised observations minus the offsets,
``tau_m``: the calibrated expert temperatures).  The refined posterior, NUTS and the
imputation must reproduce it; the amortised posterior must come close.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

import twin
from twin.model import ModalitySpec, TwinModel
from twin.model.nuts_check import compare_with_nuts


def simulate_linear(n: int = 400, seed: int = 0) -> twin.Cohort:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    ids = [f"i{k:03d}" for k in range(n)]
    wa, wb = rng.normal(size=(2, 8)), rng.normal(size=(2, 6))
    a = z @ wa + 0.5 * rng.normal(size=(n, 8)) + 3.0
    b = 2.0 * (z @ wb + 0.5 * rng.normal(size=(n, 6))) - 1.0
    return twin.Cohort.from_tables(
        {
            "a": pd.DataFrame(a, index=ids, columns=[f"a{j}" for j in range(8)]),
            "b": pd.DataFrame(b, index=ids, columns=[f"b{j}" for j in range(6)]),
        }
    )


@pytest.fixture(scope="module")
def fitted():
    cohort = simulate_linear()
    train, test = cohort.split((0.8, 0.2), seed=0)
    spec = ModalitySpec(decoder="linear", decoder_weights="point", encoder_hidden=(32,))
    model = TwinModel(cohort.schema, latent_dim=2, default_spec=spec)
    model.fit(train, seed=0, progress=False, epochs=150, patience=30)
    return model, test


def exact_posterior(model: TwinModel, data) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form posterior mean (N, d) and covariance (N, d, d) under the decoders."""
    module = model.module
    shift, scale = module.latent_shift, module.latent_scale
    n, d = len(data), module.latent_dim
    precision = torch.eye(d).repeat(n, 1, 1)
    linear = torch.zeros(n, d)
    for tau, (name, block) in zip(module.expert_temperature, module.items(), strict=True):
        layer = block.decoder.net[0]
        head = block.heads[0]
        a = layer.weight * scale  # (F, d)
        offset = layer.weight @ shift + layer.bias
        r = head.target(data.values[name]) - offset
        dinv = data.masks[name].float() / head.sigma**2  # 0 where unobserved
        precision = precision + tau * torch.einsum("fi,nf,fj->nij", a, dinv, a)
        linear = linear + tau * (dinv * r) @ a
    cov = torch.linalg.inv(precision)
    return torch.einsum("nij,nj->ni", cov, linear), cov


def test_refined_full_posterior_matches_closed_form(fitted):
    model, test = fitted
    partial = test.hide("b", individuals=test.individuals[:20])
    with torch.no_grad():
        exact_mean, exact_cov = exact_posterior(model, model.prepare(partial))
    twins = model.instantiate(partial, refine_steps=400, refine_lr=0.03, covariance="full", seed=0)
    sd = torch.sqrt(torch.diagonal(exact_cov, dim1=-2, dim2=-1))
    z_err = ((twins.loc - exact_mean) / sd).abs()
    assert float(z_err.mean()) < 0.1
    ratio = torch.sqrt(torch.diagonal(twins.covariance, dim1=-2, dim2=-1)) / sd
    assert float((ratio - 1).abs().mean()) < 0.1
    # individuals that lost block b are less certain than those that kept it
    assert float(sd[:20].mean()) > 1.2 * float(sd[20:].mean())


def test_amortised_posterior_is_close_to_closed_form(fitted):
    model, test = fitted
    partial = test.hide("a", individuals=test.individuals[:20])
    twins = model.instantiate(partial)
    with torch.no_grad():
        exact_mean, exact_cov = exact_posterior(model, model.prepare(partial))
    sd = torch.sqrt(torch.diagonal(exact_cov, dim1=-2, dim2=-1))
    assert float(((twins.loc - exact_mean) / sd).abs().mean()) < 0.5
    amort_sd = torch.sqrt(torch.diagonal(twins.covariance, dim1=-2, dim2=-1))
    assert 0.5 < float((amort_sd / sd).mean()) < 1.5


def test_imputation_is_the_closed_form_predictive(fitted):
    model, test = fitted
    partial = test.hide("b")
    twins = model.instantiate(partial, refine_steps=400, refine_lr=0.03, covariance="full")
    ds = twins.impute(n_draws=4000, seed=1)
    module = model.module
    block = module.block("b")
    layer, head = block.decoder.net[0], block.heads[0]
    a = layer.weight * module.latent_scale
    offset = layer.weight @ module.latent_shift + layer.bias
    mean_std = twins.loc @ a.T + offset  # standardised scale
    var_std = torch.einsum("fi,nij,fj->nf", a, twins.covariance, a) + head.sigma**2
    mean = (mean_std * head.scale + head.center).detach().numpy()
    sd = (var_std.sqrt() * head.scale).detach().numpy()
    np.testing.assert_allclose(ds["b"].values, mean, atol=0.08 * sd.mean())
    np.testing.assert_allclose(ds["b_sd"].values, sd, rtol=0.06)
    z95 = (ds["b_q95"].values - mean) / sd
    assert abs(float(np.median(z95)) - 1.645) < 0.1
    assert not ds["b_observed"].values.any()
    np.testing.assert_array_equal(ds["a"].values, test.values("a"))


def test_nuts_recovers_the_closed_form_posterior(fitted):
    model, test = fitted
    who = test.individuals[3]
    partial = test.hide("b", individuals=[who])
    report = compare_with_nuts(model, partial, who, num_warmup=300, num_samples=800, seed=0)
    with torch.no_grad():
        mean, cov = exact_posterior(model, model.prepare(partial.select([who])))
    sd = np.sqrt(np.diag(cov[0].numpy()))
    assert np.all(np.abs(report.nuts_mean - mean[0].numpy()) / sd < 0.25)
    assert np.all(np.abs(report.nuts_sd / sd - 1) < 0.2)


def test_calibration_score_is_the_predictive_density_of_hidden_blocks(fitted):
    from twin.model.calibration import leave_one_out_log_likelihood

    model, test = fitted
    module = copy.deepcopy(model.module)
    module.latent_shift.fill_(0.3)  # any affine latent map must be honoured
    module.latent_scale.fill_(1.5)
    data = model.prepare(test)
    torch.manual_seed(0)
    score = leave_one_out_log_likelihood(module, data, n_draws=2000)
    # closed form: each block hidden in turn, Gaussian predictive from the amortised
    # posterior given the other block, scored on the data scale
    total, count = 0.0, 0
    with torch.no_grad():
        for name, block in module.items():
            other = {m: (torch.zeros_like(k) if m == name else k) for m, k in data.masks.items()}
            loc, scale = module.posterior(data.with_masks(other))
            layer, head = block.decoder.net[0], block.heads[0]
            a = layer.weight * module.latent_scale
            mean = (loc @ a.T + layer.weight @ module.latent_shift + layer.bias) * head.scale
            var = ((scale**2) @ (a**2).T + head.sigma**2) * head.scale**2
            mean = mean + head.center
            lp = torch.distributions.Normal(mean, var.sqrt()).log_prob(data.values[name])
            total += float(lp.sum())
            count += lp.numel()
    assert score == pytest.approx(total / count, abs=0.02)
