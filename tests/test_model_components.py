"""Building blocks: product of experts, likelihood heads, Bayesian layers, specs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from twin.model.likelihoods import (
    BernoulliHead,
    CategoricalHead,
    GaussianHead,
    NegativeBinomialHead,
    StudentTHead,
)
from twin.model.poe import product_of_experts
from twin.model.specs import ModalitySpec
from twin.nn import GaussianExpert, build_decoder, build_encoder
from twin.nn.layers import BayesianLinear, weight_sampling


def test_product_of_experts_is_the_gaussian_product():
    e1 = GaussianExpert(torch.tensor([[1.0, -2.0]]), torch.tensor([[4.0, 1.0]]))
    e2 = GaussianExpert(torch.tensor([[3.0, 5.0]]), torch.tensor([[2.0, 3.0]]))
    loc, scale = product_of_experts([e1, e2], [torch.tensor([True]), torch.tensor([True])])
    prec = 1 + np.array([4.0, 1.0]) + np.array([2.0, 3.0])
    mean = (np.array([4.0, -2.0]) + np.array([6.0, 15.0])) / prec
    np.testing.assert_allclose(loc[0].numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(scale[0].numpy(), prec**-0.5, rtol=1e-6)
    # an absent modality is left out exactly (not a zero-valued observation)
    loc2, scale2 = product_of_experts([e1, e2], [torch.tensor([True]), torch.tensor([False])])
    np.testing.assert_allclose(loc2[0].numpy(), np.array([4.0, -2.0]) / np.array([5.0, 2.0]))
    np.testing.assert_allclose(scale2[0].numpy(), np.array([5.0, 2.0]) ** -0.5, rtol=1e-6)


@torch.no_grad()
def test_heads_log_prob_match_scipy_and_ignore_unobserved_entries():
    x = torch.tensor([[1.5, 7.0, 2.0]])
    mask = torch.tensor([[True, True, False]])
    g = GaussianHead([0, 1, 2])
    g.fit_statistics(torch.tensor([[1.0, 5.0, 0.0], [2.0, 9.0, 0.0]]), torch.ones(2, 3, dtype=bool))
    raw = torch.tensor([[0.1, -0.2, 0.3]])
    t = (x - g.center) / g.scale
    sd = g.sigma.detach()
    expected = stats.norm.logpdf(t[0, :2], raw[0, :2], sd[:2]).sum()
    assert float(g.log_prob(raw, x, mask)) == pytest.approx(expected, rel=1e-5)
    x_nan = x.clone()
    x_nan[0, 2] = float("nan")  # an unobserved entry never reaches the likelihood
    assert torch.isfinite(g.log_prob(raw, torch.where(mask, x_nan, 0.0), mask)).all()

    st = StudentTHead([0])
    lp = st.log_prob(torch.tensor([[0.3]]), torch.tensor([[1.0]]), torch.tensor([[True]]))
    df, s = float(st.df), float(st.sigma)
    assert float(lp) == pytest.approx(stats.t.logpdf(1.0, df, 0.3, s), rel=1e-5)

    nb = NegativeBinomialHead([0])
    k, mu = 4.0, 2.5
    r = float(nb.total_count)
    lp = nb.log_prob(torch.tensor([[np.log(mu)]]), torch.tensor([[k]]), torch.tensor([[True]]))
    assert float(lp) == pytest.approx(stats.nbinom.logpmf(k, r, r / (r + mu)), rel=1e-4)

    b = BernoulliHead([0])
    lp = b.log_prob(torch.tensor([[0.4]]), torch.tensor([[1.0]]), torch.tensor([[True]]))
    assert float(lp) == pytest.approx(np.log(1 / (1 + np.exp(-0.4))), rel=1e-6)


def test_categorical_head_with_different_level_counts():
    head = CategoricalHead([0, 2], [2, 4])
    assert head.n_outputs == 6
    raw = torch.tensor([[0.0, 1.0, 0.0, 0.0, 2.0, 0.0]])
    probs = head.distribution(raw).probs[0]
    np.testing.assert_allclose(probs[0, :2].numpy(), [1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-6)
    assert float(probs[0, 2:].sum()) < 1e-8  # padded levels get no mass
    np.testing.assert_allclose(
        probs[1].numpy(), np.exp([0, 0, 2, 0]) / np.exp([0, 0, 2, 0]).sum(), rtol=1e-6
    )
    lp = head.log_prob(raw, torch.tensor([[1.0, 2.0]]), torch.tensor([[True, False]]))
    assert float(lp) == pytest.approx(np.log(np.e / (1 + np.e)), rel=1e-6)


def test_encoder_sees_the_mask_not_zero_padding():
    torch.manual_seed(0)
    enc = build_encoder("mlp", n_inputs=3, n_features=3, latent_dim=2, hidden=(8,))
    x = torch.tensor([[0.0, 1.0, 2.0]])
    observed_zero = enc(x, torch.tensor([[True, True, True]]))
    unobserved = enc(x, torch.tensor([[False, True, True]]))
    assert not torch.allclose(observed_zero.loc, unobserved.loc)
    assert (observed_zero.precision > 0).all()


def test_bayesian_layer_shrinks_unsupported_outputs():
    torch.manual_seed(0)
    layer = BayesianLinear(3, 2)
    x = torch.randn(400, 3)
    y = torch.stack([x @ torch.tensor([1.0, -1.0, 0.5]), torch.randn(400)], 1)
    opt = torch.optim.Adam(layer.parameters(), lr=0.03)
    with weight_sampling(layer, True):
        for _ in range(600):
            opt.zero_grad()
            loss = ((layer(x) - y) ** 2).sum() / 2 + layer.kl()
            loss.backward()
            opt.step()
    w = layer.weight.detach()
    np.testing.assert_allclose(w[0].numpy(), [1.0, -1.0, 0.5], atol=0.1)
    assert float(w[1].abs().max()) < 0.1  # pure noise output: loadings shrunk to ~0
    prior_var = layer.prior_var.detach()
    assert float(prior_var[1]) < 0.1 * float(prior_var[0])
    layer.sample_weights = False
    assert torch.equal(layer(x[:2]), layer(x[:2]))  # posterior mean when not sampling


def test_decoder_families_and_spec_round_trip():
    dec = build_decoder("linear", latent_dim=2, n_outputs=3, n_covariates=1)
    out = dec(torch.zeros(5, 2), torch.ones(5, 1))
    assert out.shape == (5, 3)
    assert len(dec.export()["layers"]) == 1
    with pytest.raises(ValueError, match="unknown decoder"):
        build_decoder("transformer", latent_dim=2, n_outputs=3)
    spec = ModalitySpec(
        continuous="student_t", encoder_hidden=[64, 32], decoder_weights="group_ard"
    )
    assert ModalitySpec.from_dict(spec.to_dict()) == spec
    assert spec.likelihood("count") == "negative_binomial"
    with pytest.raises(ValueError, match="unknown"):
        ModalitySpec.from_dict({"colour": "red"})
