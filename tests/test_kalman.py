"""Kalman filter / RTS smoother against straightforward NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from twin.dynamics import LinearGaussianDynamics, gaussian_update, kalman_filter, rts_smoother

DT = torch.float64


def make_problem(seed: int, B: int = 3, T: int = 9, D: int = 3, Fdim: int = 4, P: int = 2):
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(D, D))
    A = -(M @ M.T / D + 0.3 * np.eye(D)) + 0.3 * (M - M.T)
    Lq = np.tril(rng.normal(size=(D, D))) * 0.4
    Qc = Lq @ Lq.T
    Bm = rng.normal(size=(D, P)) * 0.5
    b = rng.normal(size=D) * 0.2
    H = rng.normal(size=(Fdim, D))
    c = rng.normal(size=Fdim)
    R = rng.uniform(0.1, 0.5, size=Fdim)
    times = np.cumsum(rng.uniform(0.0, 2.0, size=(B, T)), axis=1)
    times[:, 0] = 0.0
    y = rng.normal(size=(B, T, Fdim)) * 2.0
    mask = rng.uniform(size=(B, T, Fdim)) < 0.6
    if T > 4:
        times[:, 3] = times[:, 2]  # a zero gap
        mask[:, 4] = False  # a fully missing step
    u = rng.uniform(size=(B, T, P))
    m0 = rng.normal(size=(B, D))
    X = rng.normal(size=(B, D, D))
    P0 = X @ np.swapaxes(X, -1, -2) / D + 0.1 * np.eye(D)
    return dict(
        A=A, Qc=Qc, Bm=Bm, b=b, H=H, c=c, R=R, times=times, y=y, mask=mask, u=u, m0=m0, P0=P0
    )


def np_discretize(A, Qc, dt):
    D = A.shape[0]
    M = np.zeros((2 * D, 2 * D))
    M[:D, :D], M[:D, D:], M[D:, D:] = -A, Qc, A.T
    E = scipy.linalg.expm(M * dt)
    F = E[D:, D:].T
    Q = F @ E[:D, D:]
    N = np.zeros((2 * D, 2 * D))
    N[:D, :D], N[:D, D:] = A, np.eye(D)
    G = scipy.linalg.expm(N * dt)[:D, D:]
    return F, 0.5 * (Q + Q.T), G


def np_kalman(p, R_full=None):
    """Textbook covariance-form filter, one sequence at a time, observed subset only."""
    B, T, _ = p["y"].shape
    out_m, out_P, out_ll = [], [], []
    for i in range(B):
        m, P = p["m0"][i].copy(), p["P0"][i].copy()
        ms, Ps, ll = [], [], 0.0
        for k in range(T):
            if k > 0:
                F, Q, G = np_discretize(p["A"], p["Qc"], p["times"][i, k] - p["times"][i, k - 1])
                m = F @ m + G @ (p["Bm"] @ p["u"][i, k - 1] + p["b"])
                P = F @ P @ F.T + Q
            o = p["mask"][i, k]
            if o.any():
                H = p["H"][o]
                R = np.diag(p["R"][o]) if R_full is None else R_full[np.ix_(o, o)]
                S = H @ P @ H.T + R
                K = P @ H.T @ np.linalg.inv(S)
                resid = p["y"][i, k, o] - H @ m - p["c"][o]
                ll += scipy.stats.multivariate_normal(mean=np.zeros(o.sum()), cov=S).logpdf(resid)
                m = m + K @ resid
                P = (np.eye(len(m)) - K @ H) @ P
            ms.append(m)
            Ps.append(P)
        out_m.append(ms)
        out_P.append(Ps)
        out_ll.append(ll)
    return np.array(out_m), np.array(out_P), np.array(out_ll)


def torch_inputs(p):
    dyn = LinearGaussianDynamics.from_matrices(
        torch.tensor(p["A"]), torch.tensor(p["Bm"]), torch.tensor(p["b"]), torch.tensor(p["Qc"])
    )
    y = torch.tensor(p["y"])
    mask = torch.tensor(p["mask"])
    y = torch.where(mask, y, torch.nan)  # masked values are never read
    kw = dict(
        mask=mask,
        obs_offset=torch.tensor(p["c"]),
        init_mean=torch.tensor(p["m0"]),
        init_cov=torch.tensor(p["P0"]),
        inputs=torch.tensor(p["u"]),
    )
    return dyn, y, torch.tensor(p["times"]), torch.tensor(p["H"]), kw


def test_filter_matches_numpy_reference_with_masks_and_irregular_times():
    p = make_problem(0)
    dyn, y, times, H, kw = torch_inputs(p)
    res = kalman_filter(dyn, y, times, H, torch.tensor(p["R"]), **kw)
    ref_m, ref_P, ref_ll = np_kalman(p)
    np.testing.assert_allclose(res.filtered_mean.detach().numpy(), ref_m, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.filtered_cov.detach().numpy(), ref_P, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.log_likelihood.detach().numpy(), ref_ll, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(res.filtered_mean).all()


def test_filter_full_noise_covariance_matches_reference():
    p = make_problem(1, Fdim=3)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3, 3))
    R_full = X @ X.T / 3 + 0.2 * np.eye(3)
    dyn, y, times, H, kw = torch_inputs(p)
    res = kalman_filter(dyn, y, times, H, torch.tensor(R_full), **kw)
    ref_m, ref_P, ref_ll = np_kalman(p, R_full=R_full)
    np.testing.assert_allclose(res.filtered_mean.detach().numpy(), ref_m, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.filtered_cov.detach().numpy(), ref_P, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.log_likelihood.detach().numpy(), ref_ll, rtol=1e-6, atol=1e-6)


def test_fully_masked_step_is_prediction_and_all_masked_is_prior():
    p = make_problem(2)
    dyn, y, times, H, kw = torch_inputs(p)
    res = kalman_filter(dyn, y, times, H, torch.tensor(p["R"]), **kw)
    assert torch.equal(res.filtered_mean[:, 4], res.predicted_mean[:, 4])
    assert torch.equal(res.filtered_cov[:, 4], res.predicted_cov[:, 4])
    assert torch.equal(res.step_log_likelihood[:, 4], torch.zeros(3, dtype=DT))

    kw["mask"] = torch.zeros_like(kw["mask"])
    res = kalman_filter(dyn, y, times, H, torch.tensor(p["R"]), **kw)
    assert torch.equal(res.log_likelihood, torch.zeros(3, dtype=DT))
    m, P = kw["init_mean"], kw["init_cov"]
    for k in range(times.shape[1]):
        if k > 0:
            m, P = dyn.transition(m, P, times[:, k] - times[:, k - 1], kw["inputs"][:, k - 1])
        torch.testing.assert_close(res.filtered_mean[:, k], m, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(res.filtered_cov[:, k], P, rtol=1e-12, atol=1e-12)


def test_log_likelihood_gradient_matches_finite_difference():
    p = make_problem(3, B=2, T=6)
    dyn, y, times, H, kw = torch_inputs(p)
    R = torch.tensor(p["R"], requires_grad=True)
    ll = kalman_filter(dyn, y, times, H, R, **kw).log_likelihood.sum()
    ll.backward()
    assert torch.isfinite(dyn.A_free.grad).all() and dyn.A_free.grad.abs().sum() > 0
    eps = 1e-6
    with torch.no_grad():
        for i, j in [(0, 0), (1, 2)]:
            dyn.A_free[i, j] += eps
            up = kalman_filter(dyn, y, times, H, R, **kw).log_likelihood.sum()
            dyn.A_free[i, j] -= 2 * eps
            down = kalman_filter(dyn, y, times, H, R, **kw).log_likelihood.sum()
            dyn.A_free[i, j] += eps
            fd = (up - down) / (2 * eps)
            assert abs(fd.item() - dyn.A_free.grad[i, j].item()) < 1e-5 * max(1.0, abs(fd.item()))
    assert torch.isfinite(R.grad).all() and R.grad.abs().sum() > 0


def _prior(seed, batch=(4,), D=3):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(*batch, D, dtype=DT, generator=g)
    X = torch.randn(*batch, D, D, dtype=DT, generator=g)
    return m, X @ X.mT + 0.1 * torch.eye(D, dtype=DT)


def test_gaussian_update_zero_precision_is_noop():
    m, P = _prior(0)
    upd = gaussian_update(m, P, torch.randn(4, 3, dtype=DT), torch.zeros(4, 3, 3, dtype=DT))
    assert torch.equal(upd.mean, m) and torch.equal(upd.cov, P)
    assert torch.equal(upd.log_norm, torch.zeros(4, dtype=DT))
    # Empty sqrt-information expert (no pseudo-observations) and a fully masked one.
    upd = gaussian_update(
        m,
        P,
        expert_prec_factor=torch.zeros(4, 3, 0, dtype=DT),
        expert_target=torch.zeros(4, 0, dtype=DT),
    )
    assert torch.equal(upd.mean, m) and torch.equal(upd.cov, P)
    upd = gaussian_update(
        m,
        P,
        expert_prec_factor=torch.randn(4, 3, 2, dtype=DT),
        expert_target=torch.randn(4, 2, dtype=DT),
        mask=torch.zeros(4, 2, dtype=torch.bool),
    )
    assert torch.equal(upd.mean, m) and torch.equal(upd.cov, P)


def test_gaussian_update_is_product_of_experts():
    m, P = _prior(1)
    mu, X = _prior(2)
    prec = torch.linalg.inv(X)
    upd = gaussian_update(m, P, mu, prec)
    post_prec = torch.linalg.inv(P) + prec
    post_cov = torch.linalg.inv(post_prec)
    post_mean = (
        post_cov @ (torch.linalg.solve(P, m.unsqueeze(-1)) + prec @ mu.unsqueeze(-1))
    ).squeeze(-1)
    torch.testing.assert_close(upd.cov, post_cov, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(upd.mean, post_mean, rtol=1e-10, atol=1e-10)
    for i in range(4):
        ref = scipy.stats.multivariate_normal(m[i].numpy(), (P[i] + X[i]).numpy()).logpdf(
            mu[i].numpy()
        )
        assert abs(upd.log_norm[i].item() - ref) < 1e-9
    # Singular (rank-1) precision: informs one direction only.
    v = torch.tensor([1.0, 0.0, 0.0], dtype=DT)
    upd1 = gaussian_update(m, P, mu, 4.0 * torch.outer(v, v).expand(4, 3, 3))
    H = v[None, :]
    S = H @ P @ H.T + 0.25
    K = P @ H.T / S
    ref_mean = m + (K @ (mu[:, :1] - m[:, :1]).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(upd1.mean, ref_mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(upd1.cov, P - K @ H @ P, rtol=1e-10, atol=1e-10)


def test_filter_update_equals_latent_expert_update():
    """With an invertible H the measurement update is a latent-space expert."""
    p = make_problem(4, B=2, T=1, Fdim=3)
    p["mask"][:] = True
    dyn, y, times, H, kw = torch_inputs(p)
    R = torch.tensor(p["R"])
    res = kalman_filter(dyn, y, times, H, R, **kw)
    Rinv = torch.diag(1 / R)
    prec = H.T @ Rinv @ H
    mu = torch.linalg.solve(H, (y[:, 0] - kw["obs_offset"]).unsqueeze(-1)).squeeze(-1)
    upd = gaussian_update(kw["init_mean"], kw["init_cov"], mu, prec.expand(2, 3, 3))
    torch.testing.assert_close(res.filtered_mean[:, 0], upd.mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(res.filtered_cov[:, 0], upd.cov, rtol=1e-10, atol=1e-10)
    # log p(y) = log N(mu; m, P + prec^-1) - log|det H|
    _, logdet_H = torch.linalg.slogdet(H)
    torch.testing.assert_close(res.log_likelihood, upd.log_norm - logdet_H, rtol=1e-10, atol=1e-10)


def joint_posterior(p, i):
    """Closed-form smoothing posterior of one sequence from the joint Gaussian."""
    T, D = p["times"].shape[1], p["A"].shape[0]
    means, Fs, Qs = [p["m0"][i]], [], []
    for k in range(1, T):
        F, Q, G = np_discretize(p["A"], p["Qc"], p["times"][i, k] - p["times"][i, k - 1])
        means.append(F @ means[-1] + G @ (p["Bm"] @ p["u"][i, k - 1] + p["b"]))
        Fs.append(F)
        Qs.append(Q)
    mu = np.concatenate(means)
    C = np.zeros((T * D, T * D))
    C[:D, :D] = p["P0"][i]
    for k in range(1, T):  # Cov(z_k, z_j) = F_k Cov(z_{k-1}, z_j), j < k
        s = slice(k * D, (k + 1) * D)
        prev = slice((k - 1) * D, k * D)
        C[s, : k * D] = Fs[k - 1] @ C[prev, : k * D]
        C[: k * D, s] = C[s, : k * D].T
        C[s, s] = Fs[k - 1] @ C[prev, prev] @ Fs[k - 1].T + Qs[k - 1]
    rows, obs, noise = [], [], []
    for k in range(T):
        for f in np.nonzero(p["mask"][i, k])[0]:
            h = np.zeros(T * D)
            h[k * D : (k + 1) * D] = p["H"][f]
            rows.append(h)
            obs.append(p["y"][i, k, f] - p["c"][f])
            noise.append(p["R"][f])
    Hj = np.array(rows)
    S = Hj @ C @ Hj.T + np.diag(noise)
    K = C @ Hj.T @ np.linalg.inv(S)
    post_mu = mu + K @ (np.array(obs) - Hj @ mu)
    post_C = C - K @ Hj @ C
    return post_mu.reshape(T, D), post_C


def test_rts_smoother_matches_joint_gaussian_posterior():
    p = make_problem(5, B=2, T=6)
    dyn, y, times, H, kw = torch_inputs(p)
    sm = rts_smoother(kalman_filter(dyn, y, times, H, torch.tensor(p["R"]), **kw))
    T, D = 6, 3
    for i in range(2):
        mu, C = joint_posterior(p, i)
        np.testing.assert_allclose(sm.mean[i].detach().numpy(), mu, rtol=1e-6, atol=1e-8)
        for k in range(T):
            blk = C[k * D : (k + 1) * D, k * D : (k + 1) * D]
            np.testing.assert_allclose(sm.cov[i, k].detach().numpy(), blk, rtol=1e-6, atol=1e-8)
        for k in range(T - 1):
            cross = C[(k + 1) * D : (k + 2) * D, k * D : (k + 1) * D]
            np.testing.assert_allclose(
                sm.cross_cov[i, k].detach().numpy(), cross, rtol=1e-6, atol=1e-8
            )


@pytest.mark.parametrize("shared_times", [True, False])
def test_filter_batch_shapes(shared_times):
    """Extra batch dims (individual x scenario) and a shared time grid broadcast."""
    p = make_problem(6, B=2, T=5)
    dyn, y, times, H, kw = torch_inputs(p)
    if shared_times:
        times = times[0]
    y2 = y[:, None].expand(2, 3, 5, 4)
    kw2 = dict(kw, mask=kw["mask"][:, None].expand(2, 3, 5, 4), inputs=kw["inputs"][:, None])
    kw2["init_mean"] = kw["init_mean"][:, None]
    kw2["init_cov"] = kw["init_cov"][:, None]
    res = kalman_filter(
        dyn, y2, times if shared_times else times[:, None], H, torch.tensor(p["R"]), **kw2
    )
    assert res.filtered_mean.shape == (2, 3, 5, 3)
    assert res.log_likelihood.shape == (2, 3)
    ref = kalman_filter(dyn, y, times, H, torch.tensor(p["R"]), **kw)
    torch.testing.assert_close(res.log_likelihood[:, 1], ref.log_likelihood, rtol=1e-12, atol=1e-12)
