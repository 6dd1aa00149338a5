"""Exact discretisation, moment propagation and batched simulation of the linear SDE."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import torch

from twin.dynamics import LinearGaussianDynamics, discretize_lti, simulate_latent

DT = torch.float64


def random_system(seed: int, D: int = 3, P: int = 2):
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(D, D))
    A = -(M @ M.T / D + 0.2 * np.eye(D)) + 0.5 * (rng.normal(size=(D, D)) - rng.normal(size=(D, D)))
    A = A - (max(np.linalg.eigvals(A).real.max(), 0) + 0.1) * np.eye(D)  # ensure stable
    Lq = np.tril(rng.normal(size=(D, D))) * 0.3
    Qc = Lq @ Lq.T
    B = rng.normal(size=(D, P))
    b = rng.normal(size=D) * 0.1
    return A, Qc, B, b


def test_discretize_matches_scipy_expm_and_quadrature():
    A, Qc, _, _ = random_system(0)
    dts = np.array([0.05, 0.7, 3.0, 12.0])
    F, Q, G = discretize_lti(torch.tensor(A), torch.tensor(Qc), torch.tensor(dts))
    for i, dt in enumerate(dts):
        np.testing.assert_allclose(F[i].numpy(), scipy.linalg.expm(A * dt), rtol=1e-10, atol=1e-12)
        Qref, _ = scipy.integrate.quad_vec(
            lambda s: scipy.linalg.expm(A * s) @ Qc @ scipy.linalg.expm(A * s).T,
            0,
            dt,
            epsabs=1e-13,
        )
        Gref, _ = scipy.integrate.quad_vec(lambda s: scipy.linalg.expm(A * s), 0, dt, epsabs=1e-13)
        np.testing.assert_allclose(Q[i].numpy(), Qref, rtol=1e-8, atol=1e-11)
        np.testing.assert_allclose(G[i].numpy(), Gref, rtol=1e-8, atol=1e-11)


def test_long_gap_is_finite_and_reaches_stationary_covariance():
    A, Qc, _, _ = random_system(1)
    F, Q, G = discretize_lti(torch.tensor(A), torch.tensor(Qc), torch.tensor([2000.0]))
    stationary = scipy.linalg.solve_continuous_lyapunov(A, -Qc)
    assert torch.isfinite(Q).all() and torch.isfinite(G).all()
    np.testing.assert_allclose(Q[0].numpy(), stationary, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(F[0].numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(G[0].numpy(), -np.linalg.inv(A), rtol=1e-8)


def test_zero_gap_is_exact_identity():
    A, Qc, _, _ = random_system(2)
    F, Q, G = discretize_lti(
        torch.tensor(A), torch.tensor(Qc), torch.tensor([[0.0, 5.0], [0.0, 0.0]])
    )
    assert F.shape == (2, 2, 3, 3)
    eye = torch.eye(3, dtype=DT)
    for idx in [(0, 0), (1, 0), (1, 1)]:
        assert torch.equal(F[idx], eye)
        assert torch.equal(Q[idx], torch.zeros(3, 3, dtype=DT))
        assert torch.equal(G[idx], torch.zeros(3, 3, dtype=DT))
    assert not torch.equal(F[0, 1], eye)


def test_semigroup_property():
    A, Qc, _, _ = random_system(3)
    At, Qt = torch.tensor(A), torch.tensor(Qc)
    s, t = 0.8, 2.9
    Fs, Qs, Gs = discretize_lti(At, Qt, torch.tensor(s, dtype=DT))
    Ft, Qtt, Gt = discretize_lti(At, Qt, torch.tensor(t, dtype=DT))
    F, Q, G = discretize_lti(At, Qt, torch.tensor(s + t, dtype=DT))
    torch.testing.assert_close(F, Fs @ Ft, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(Q, Ft @ Qs @ Ft.T + Qtt, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(G, Gt + Ft @ Gs, rtol=1e-10, atol=1e-12)


def test_stable_parametrisation_is_stable_for_random_parameters():
    torch.manual_seed(0)
    dyn = LinearGaussianDynamics(5, 1, dtype=DT)
    with torch.no_grad():
        for p in (dyn.rate_raw, dyn.sym_factor, dyn.skew_raw):
            p.normal_(0.0, 3.0)
    eig = torch.linalg.eigvals(dyn.A)
    assert (eig.real < 0).all()
    # Default initialisation relaxes on the given timescale.
    dyn0 = LinearGaussianDynamics(4, timescale=20.0, dtype=DT)
    torch.testing.assert_close(dyn0.A, -torch.eye(4, dtype=DT) / 20.0, rtol=0, atol=1e-12)


def test_transition_moments_and_gradients():
    A, Qc, B, b = random_system(4)
    dyn = LinearGaussianDynamics.from_matrices(
        torch.tensor(A), torch.tensor(B), torch.tensor(b), torch.tensor(Qc)
    )
    torch.testing.assert_close(dyn.Qc, torch.tensor(Qc))
    rng = np.random.default_rng(0)
    m = torch.tensor(rng.normal(size=(4, 5, 3)))
    X = rng.normal(size=(4, 5, 3, 3))
    P = torch.tensor(X @ np.swapaxes(X, -1, -2))
    dt = torch.tensor(rng.uniform(0, 3, size=(4, 5)))
    u = torch.tensor(rng.normal(size=(4, 5, 2)))
    m1, P1 = dyn.transition(m, P, dt, u)
    i, j = 2, 3
    F = scipy.linalg.expm(A * dt[i, j].item())
    F2, Q2, G2 = discretize_lti(torch.tensor(A), torch.tensor(Qc), dt[i, j])
    ref_m = F @ m[i, j].numpy() + G2.numpy() @ (B @ u[i, j].numpy() + b)
    ref_P = F @ P[i, j].numpy() @ F.T + Q2.numpy()
    np.testing.assert_allclose(m1[i, j].detach().numpy(), ref_m, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(P1[i, j].detach().numpy(), ref_P, rtol=1e-9, atol=1e-12)
    (m1.sum() + P1.sum()).backward()
    for p in (dyn.A_free, dyn.B, dyn.b, dyn.L_free):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_sample_paths_deterministic_limit_and_start():
    A, _, B, b = random_system(5)
    dyn = LinearGaussianDynamics.from_matrices(torch.tensor(A), torch.tensor(B), torch.tensor(b))
    times = torch.tensor([0.0, 0.5, 0.5, 2.0, 7.5], dtype=DT)
    z0 = torch.randn(6, 3, dtype=DT, generator=torch.Generator().manual_seed(0))
    u = torch.rand(6, 5, 2, dtype=DT, generator=torch.Generator().manual_seed(1))
    paths = dyn.sample_paths(z0, times, u, generator=torch.Generator().manual_seed(2))
    assert paths.shape == (6, 5, 3)
    assert torch.equal(paths[:, 0], z0)
    m, P = z0, torch.zeros(6, 3, 3, dtype=DT)
    for k in range(4):
        m, P = dyn.transition(m, P, times[k + 1] - times[k], u[:, k])
        torch.testing.assert_close(paths[:, k + 1], m.detach(), rtol=1e-10, atol=1e-12)


def _system_with_noise():
    A, Qc, B, b = random_system(6, D=2, P=2)
    return LinearGaussianDynamics.from_matrices(
        torch.tensor(A), torch.tensor(B), torch.tensor(b), torch.tensor(Qc * 4.0)
    )


def test_simulate_latent_moments_match_transition():
    dyn = _system_with_noise()
    times = torch.tensor([0.0, 0.4, 1.5, 1.5, 4.0], dtype=DT)
    N, S, R = 2, 2, 20000
    g = torch.Generator().manual_seed(123)
    z0_mean = torch.tensor([[1.0, -1.0], [0.0, 2.0]], dtype=DT)
    z0_cov = torch.tensor([[[0.5, 0.1], [0.1, 0.3]], [[0.2, 0.0], [0.0, 0.2]]], dtype=DT)
    exposure = torch.zeros(S, 5, 2, dtype=DT)
    exposure[1, :, 0] = 1.0  # scenario 1: agent 0 on
    exposure[1, 2:, 1] = 2.0
    z = simulate_latent(dyn, z0_mean, z0_cov, times, exposure, n_draws=R, generator=g)
    assert z.shape == (N, S, R, 5, 2)
    m = z0_mean[:, None].expand(N, S, 2)
    P = z0_cov[:, None].expand(N, S, 2, 2)
    for k in range(5):
        if k > 0:
            m, P = dyn.transition(m, P, times[k] - times[k - 1], exposure[None, :, k - 1])
            m, P = m.detach(), P.detach()
        x = z[:, :, :, k]
        emp_m = x.mean(2)
        dev = x - emp_m[:, :, None]
        emp_P = torch.einsum("nsri,nsrj->nsij", dev, dev) / (R - 1)
        sd = torch.diagonal(P, dim1=-2, dim2=-1).sqrt()
        # 5 standard errors for the mean, ~6 for the covariance entries.
        assert ((emp_m - m).abs() <= 5 * sd / R**0.5).all()
        scale = sd[..., :, None] * sd[..., None, :]
        assert ((emp_P - P).abs() <= 6 * scale * (2.0 / R) ** 0.5).all()
    # Scenario 1 has inputs, so the scenarios differ in the mean.
    assert (z[:, 1, :, -1].mean(1) - z[:, 0, :, -1].mean(1)).abs().max() > 0.1


@pytest.mark.parametrize("per_individual_times", [False, True])
def test_simulate_latent_chunking_is_invariant(per_individual_times):
    dyn = _system_with_noise()
    N, S, R, T = 11, 3, 5, 6
    times = torch.tensor([0.0, 1.0, 2.5, 2.5, 6.0, 9.0], dtype=DT)
    if per_individual_times:
        times = times * (1 + torch.arange(N, dtype=DT)[:, None] / 10)
    z0_mean = torch.randn(N, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    exposure = torch.rand(N, S, T, 2, dtype=DT, generator=torch.Generator().manual_seed(1))
    kw = dict(n_draws=R, rng_block=4)

    def run(max_elements, num_workers=1):
        g = torch.Generator().manual_seed(7)
        return simulate_latent(
            dyn,
            z0_mean,
            torch.eye(2, dtype=DT),
            times,
            exposure,
            generator=g,
            max_elements=max_elements,
            num_workers=num_workers,
            **kw,
        )

    threads = torch.get_num_threads()
    full = run(10**9)
    for max_elements in (1, S * R * T * 2 + 5, S * R * T * 4, S * R * T * 7):
        assert torch.equal(run(max_elements), full)
    # Worker threads split the same pieces: same numbers; torch threads restored.
    assert torch.equal(run(10**9, num_workers=3), full)
    assert torch.equal(run(S * R * T * 3, num_workers=2), full)
    assert torch.get_num_threads() == threads
    other_seed = simulate_latent(
        dyn,
        z0_mean,
        torch.eye(2, dtype=DT),
        times,
        exposure,
        generator=torch.Generator().manual_seed(8),
        **kw,
    )
    assert not torch.equal(other_seed, full)


def test_simulate_shared_and_per_individual_times_agree():
    dyn = _system_with_noise()
    N, T = 4, 5
    times = torch.tensor([0.0, 1.0, 3.0, 3.5, 8.0], dtype=DT)
    z0 = torch.zeros(N, 2, dtype=DT)
    exposure = torch.rand(N, 2, T, 2, dtype=DT, generator=torch.Generator().manual_seed(3))
    a = simulate_latent(
        dyn, z0, torch.eye(2, dtype=DT), times, exposure, 3, torch.Generator().manual_seed(1)
    )
    b = simulate_latent(
        dyn,
        z0,
        torch.eye(2, dtype=DT),
        times.expand(N, T),
        exposure,
        3,
        torch.Generator().manual_seed(1),
    )
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_simulate_latent_float32_follows_input_dtype():
    dyn = LinearGaussianDynamics(3, 1)  # float32 parameters
    z = simulate_latent(
        dyn,
        torch.zeros(5, 3),
        torch.eye(3),
        torch.arange(4.0),
        torch.ones(1, 4, 1),
        n_draws=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert z.dtype == torch.float32 and z.shape == (5, 1, 2, 4, 3) and torch.isfinite(z).all()


def test_neural_dynamics_starts_as_the_linear_model():
    from twin.dynamics import NeuralDynamics

    A, Qc, B, b = random_system(6, D=2, P=2)
    # Slow drift (rates ~0.1/day) so that the Euler-Maruyama bias is far below tolerance.
    lin = LinearGaussianDynamics.from_matrices(*(torch.tensor(x) for x in (0.1 * A, B, b, Qc)))
    net = NeuralDynamics(2, 2, linear=lin, hidden=16, max_step=0.1, dtype=DT)
    m0 = torch.tensor([[1.0, -0.5]], dtype=DT)
    P0 = torch.tensor([[[0.3, 0.05], [0.05, 0.2]]], dtype=DT)
    u = torch.tensor([[0.5, 1.0]], dtype=DT)
    g = torch.Generator().manual_seed(0)
    m, P = net.transition(m0, P0, 1.5, u, n_samples=20000, generator=g)
    m_ref, P_ref = lin.transition(m0, P0, 1.5, u)
    sd = torch.diagonal(P_ref, dim1=-2, dim2=-1).sqrt()
    assert ((m - m_ref).abs() <= 5 * sd / 20000**0.5 + 0.01 * sd).all()
    assert ((P - P_ref).abs() <= 0.06 * sd[..., :, None] * sd[..., None, :]).all()
    # Zero gaps are exact identities; the residual MLP receives gradients once perturbed.
    times = torch.tensor([0.0, 0.0, 0.3], dtype=DT)
    z0 = torch.randn(4, 2, dtype=DT, generator=g)
    paths = net.sample_paths(z0, times, torch.ones(4, 3, 2, dtype=DT), generator=g)
    assert paths.shape == (4, 3, 2) and torch.equal(paths[:, 1], z0)
    with torch.no_grad():
        net.residual[-1].weight.normal_(0.0, 0.1)
    net.sample_paths(z0, times, None, generator=g)[:, -1].sum().backward()
    assert net.residual[0].weight.grad.abs().sum() > 0
