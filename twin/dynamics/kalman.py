"""Exact Kalman filtering and RTS smoothing on irregular times with missing data.

Model (batched over any leading dims ``...``, e.g. individuals)::

    z_{t_0}      ~ N(m_0, P_0)
    z_{t_{k+1}}  | z_{t_k} : exact transition of LinearGaussianDynamics over t_{k+1} - t_k
    y_{t_k}      = H z_{t_k} + c + eps,  eps ~ N(0, R)

with a boolean mask ``(..., T, F)`` marking the observed features. Masked entries
carry no information: after whitening by ``R``'s Cholesky factor their rows of
``H`` and ``y`` are zeroed, which is the information-form equivalent of an infinite
noise variance (their values are never read, NaN is fine). A step with nothing
observed is a pure prediction.

The measurement update is :func:`gaussian_update`, a product of Gaussian experts
written in square-root information form: an expert is a whitened pseudo-
observation ``t = G^T z + e, e ~ N(0, I)``. The update needs one Cholesky
factorisation of ``S = I + G^T P G`` (eigenvalues >= 1, so always well posed even
for singular priors) and uses the Joseph form for the covariance. The same
function fuses latent-space experts (``expert_mean``, ``expert_prec``) such as
encoder outputs at twin instantiation.

Loops run over time only; all batch dims are vectorised.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from twin.dynamics.linear_gaussian import LinearGaussianDynamics

__all__ = [
    "GaussianUpdate",
    "KalmanResult",
    "SmootherResult",
    "gaussian_update",
    "kalman_filter",
    "rts_smoother",
]

_LOG_2PI = math.log(2.0 * math.pi)


class GaussianUpdate(NamedTuple):
    """Posterior of :func:`gaussian_update`.

    Attributes
    ----------
    mean : Tensor
        ``(..., D)``.
    cov : Tensor
        ``(..., D, D)``.
    log_norm : Tensor
        ``(...)`` log normaliser, see :func:`gaussian_update`.
    """

    mean: Tensor
    cov: Tensor
    log_norm: Tensor


def _sym(x: Tensor) -> Tensor:
    return 0.5 * (x + x.mT)


def _factor_update(
    mean: Tensor, cov: Tensor, G: Tensor, target: Tensor, mask: Tensor | None
) -> GaussianUpdate:
    """Condition ``N(mean, cov)`` on ``target = G^T z + e``, ``e ~ N(0, I)`` (masked rows dropped)."""
    if mask is not None:
        maskf = mask.to(G.dtype)
        G = G * maskf[..., None, :]
        target = torch.where(mask, target, torch.zeros_like(target))
        n_obs = maskf.sum(-1)
    else:
        n_obs = torch.full(target.shape[:-1], float(target.shape[-1]), dtype=G.dtype)
        n_obs = n_obs.to(G.device)
    K_dim = G.shape[-1]
    PG = cov @ G  # (..., D, K)
    eye_k = torch.eye(K_dim, dtype=G.dtype, device=G.device)
    S = eye_k + G.mT @ PG
    L = torch.linalg.cholesky(_sym(S))
    innov = target - (G.mT @ mean.unsqueeze(-1)).squeeze(-1)  # (..., K)
    # Gain K = P G S^{-1}.
    gain = torch.cholesky_solve(PG.mT, L).mT  # (..., D, K)
    new_mean = mean + (gain @ innov.unsqueeze(-1)).squeeze(-1)
    # Joseph form with unit pseudo-observation noise.
    D = mean.shape[-1]
    A = torch.eye(D, dtype=G.dtype, device=G.device) - gain @ G.mT
    new_cov = _sym(A @ cov @ A.mT + gain @ gain.mT)
    white = torch.linalg.solve_triangular(L, innov.unsqueeze(-1), upper=False).squeeze(-1)
    log_det = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    log_norm = -0.5 * (n_obs * _LOG_2PI + log_det + (white**2).sum(-1))
    return GaussianUpdate(new_mean, new_cov, log_norm)


def _precision_factor(prec: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``G`` with ``G G^T = prec``, a column mask and ``log det`` of the kept part.

    Cholesky where ``prec`` is positive definite; otherwise an eigendecomposition
    keeping the directions with positive precision (zero precision: no columns).
    """
    L, info = torch.linalg.cholesky_ex(prec)
    D = prec.shape[-1]
    G = L
    mask = torch.ones(prec.shape[:-1], dtype=torch.bool, device=prec.device)
    log_det = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    bad = info != 0
    if bool(bad.any()):
        evals, evecs = torch.linalg.eigh(_sym(prec[bad]))
        tol = evals.abs().amax(-1, keepdim=True) * D * torch.finfo(prec.dtype).eps
        keep = evals > tol
        root = evecs * torch.where(keep, evals, torch.zeros_like(evals)).sqrt()[..., None, :]
        G, mask, log_det = G.clone(), mask.clone(), log_det.clone()
        G[bad] = root
        mask[bad] = keep
        safe = torch.where(keep, evals, torch.ones_like(evals))
        log_det[bad] = torch.log(safe).sum(-1)
    return G, mask, log_det


def gaussian_update(
    mean: Tensor,
    cov: Tensor,
    expert_mean: Tensor | None = None,
    expert_prec: Tensor | None = None,
    *,
    expert_prec_factor: Tensor | None = None,
    expert_target: Tensor | None = None,
    mask: Tensor | None = None,
) -> GaussianUpdate:
    """Product of Gaussian experts: posterior ``∝ N(z; mean, cov) x expert(z)``.

    The expert is given in one of two forms.

    * Latent space: ``expert(z) = N(z; expert_mean, expert_prec^{-1})`` with
      ``expert_mean (..., D)`` and a PSD ``expert_prec (..., D, D)``. Zero or
      singular precision is allowed (no information in the null directions; an
      all-zero precision is an exact no-op). ``log_norm`` is
      ``log N(expert_mean; mean, cov + expert_prec^{-1})`` (on the range of
      ``expert_prec`` when singular).
    * Square-root information: ``expert(z) = N(expert_target; G^T z, I)`` with
      ``G = expert_prec_factor (..., D, K)``, ``expert_target (..., K)`` and an
      optional boolean ``mask (..., K)`` of the pseudo-observations that count.
      ``log_norm`` is ``log N(target_obs; G_obs^T mean, I + G_obs^T cov G_obs)``.
      The Kalman filter's measurement update is this form with the whitened
      observation model.

    Parameters
    ----------
    mean, cov : Tensor
        Prior ``(..., D)`` and ``(..., D, D)`` (may be singular).

    Returns
    -------
    GaussianUpdate
        ``(mean, cov, log_norm)``; broadcast over the batch dims.
    """
    if expert_prec_factor is not None:
        if expert_target is None or expert_mean is not None or expert_prec is not None:
            raise ValueError(
                "give either (expert_mean, expert_prec) or (expert_prec_factor, expert_target)"
            )
        return _factor_update(mean, cov, expert_prec_factor, expert_target, mask)
    if expert_mean is None or expert_prec is None:
        raise ValueError("gaussian_update needs expert_mean and expert_prec")
    G, keep, log_det = _precision_factor(expert_prec)
    if mask is not None:
        keep = keep & mask
    target = (G.mT @ expert_mean.unsqueeze(-1)).squeeze(-1)
    upd = _factor_update(mean, cov, G, target, keep)
    # Jacobian of the whitening: N(t; G^T m, I + G^T P G) = |det G| N(mu; m, P + prec^{-1}).
    return GaussianUpdate(upd.mean, upd.cov, upd.log_norm + 0.5 * log_det)


class KalmanResult(NamedTuple):
    """Output of :func:`kalman_filter`.

    Attributes
    ----------
    filtered_mean, filtered_cov : Tensor
        ``p(z_k | y_{0:k})``: ``(..., T, D)``, ``(..., T, D, D)``.
    predicted_mean, predicted_cov : Tensor
        ``p(z_k | y_{0:k-1})`` (index 0: the initial prior).
    log_likelihood : Tensor
        ``(...)`` log marginal likelihood ``log p(y_obs)``.
    step_log_likelihood : Tensor
        ``(..., T)`` one-step-ahead predictive log densities.
    transition : Tensor
        ``(..., T-1, D, D)`` transition matrices (used by :func:`rts_smoother`).
    """

    filtered_mean: Tensor
    filtered_cov: Tensor
    predicted_mean: Tensor
    predicted_cov: Tensor
    log_likelihood: Tensor
    step_log_likelihood: Tensor
    transition: Tensor


def _whiten(
    y: Tensor, mask: Tensor, H: Tensor, R: Tensor, c: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Whitened observations ``(..., T, F)``, design ``(..., F, D)`` and ``log|R_obs|^{1/2}``.

    Diagonal ``R (F,)``: scale rows. Full ``R (F, F)``: per step, the Cholesky
    factor of ``R`` with unobserved rows/columns replaced by the identity, which
    is the marginal noise of the observed features (block diagonal after
    permutation, so whitening does not mix observed and unobserved features).
    """
    resid = y - c if c is not None else y
    resid = torch.where(mask, resid, torch.zeros_like(resid))
    maskf = mask.to(y.dtype)
    if R.dim() == 1:
        sd = R.sqrt()
        yw = resid / sd
        Hw = H / sd[:, None]
        half_logdet = (maskf * torch.log(sd)).sum(-1)
        return yw, Hw, half_logdet
    both = mask[..., :, None] & mask[..., None, :]
    eye = torch.eye(R.shape[-1], dtype=R.dtype, device=R.device)
    R_eff = torch.where(both, R, eye)
    L = torch.linalg.cholesky(R_eff)  # (..., T, F, F)
    yw = torch.linalg.solve_triangular(L, resid.unsqueeze(-1), upper=False).squeeze(-1)
    Hw = torch.linalg.solve_triangular(L, H.expand(*L.shape[:-2], *H.shape), upper=False)
    half_logdet = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # unobserved: log 1
    return yw, Hw, half_logdet


def kalman_filter(
    dynamics: LinearGaussianDynamics,
    y: Tensor,
    times: Tensor,
    obs_matrix: Tensor,
    obs_noise: Tensor,
    *,
    mask: Tensor | None = None,
    obs_offset: Tensor | None = None,
    init_mean: Tensor | None = None,
    init_cov: Tensor | None = None,
    inputs: Tensor | None = None,
) -> KalmanResult:
    """Batched Kalman filter on irregular times with missing observations.

    Parameters
    ----------
    dynamics : LinearGaussianDynamics
        Latent SDE; its exact discretisation over each gap is used.
    y : Tensor
        Observations ``(..., T, F)``; masked entries may hold anything (NaN too).
    times : Tensor
        ``(T,)`` or ``(..., T)`` sorted observation times (days). ``init_*`` is the
        prior at ``times[..., 0]``.
    obs_matrix : Tensor
        ``H`` of shape ``(F, D)``.
    obs_noise : Tensor
        ``R``: per-feature variances ``(F,)`` or a full covariance ``(F, F)``.
    mask : Tensor, optional
        Boolean ``(..., T, F)``, True where observed; default ``~isnan(y)``.
    obs_offset : Tensor, optional
        ``c`` of shape ``(F,)``.
    init_mean, init_cov : Tensor, optional
        Prior ``(..., D)``, ``(..., D, D)``; default zero mean, identity covariance.
    inputs : Tensor, optional
        Exposure ``(..., T, P)``; ``inputs[..., k, :]`` acts over ``[t_k, t_{k+1})``.

    Returns
    -------
    KalmanResult
        Differentiable with respect to the dynamics and observation parameters.
    """
    dtype, device = y.dtype, y.device
    if mask is None:
        mask = ~torch.isnan(y)
    mask = mask.to(torch.bool)
    T = y.shape[-2]
    D = dynamics.latent_dim
    times = torch.as_tensor(times, dtype=dtype, device=device)
    if times.shape[-1] != T:
        raise ValueError(f"times has {times.shape[-1]} entries, y has {T} steps")
    H = obs_matrix.to(dtype)
    R = obs_noise.to(dtype)
    c = None if obs_offset is None else obs_offset.to(dtype)
    batch = torch.broadcast_shapes(y.shape[:-2], mask.shape[:-2], times.shape[:-1])
    if init_mean is None:
        init_mean = torch.zeros(D, dtype=dtype, device=device)
    if init_cov is None:
        init_cov = torch.eye(D, dtype=dtype, device=device)
    m = init_mean.to(dtype).expand(*batch, D)
    P = init_cov.to(dtype).expand(*batch, D, D)
    F_all, Q_all, off_all = dynamics.grid_terms(times, inputs)
    F_all, Q_all, off_all = F_all.to(dtype), Q_all.to(dtype), off_all.to(dtype)
    yw, Hw, half_logdet = _whiten(y, mask, H, R, c)
    per_step_H = Hw.dim() > 2

    pm, pc, fm, fc, ll = [], [], [], [], []
    for k in range(T):
        if k > 0:
            F = F_all[..., k - 1, :, :]
            m = (F @ m.unsqueeze(-1)).squeeze(-1) + off_all[..., k - 1, :]
            P = _sym(F @ P @ F.mT + Q_all[..., k - 1, :, :])
        pm.append(m)
        pc.append(P)
        Hk = Hw[..., k, :, :] if per_step_H else Hw
        upd = gaussian_update(
            m, P, expert_prec_factor=Hk.mT, expert_target=yw[..., k, :], mask=mask[..., k, :]
        )
        m, P = upd.mean, upd.cov
        fm.append(m)
        fc.append(P)
        ll.append(upd.log_norm - half_logdet[..., k])
    step_ll = torch.stack(ll, dim=-1)
    step_ll = step_ll.expand(*batch, T)
    F_out = F_all.expand(*batch, T - 1, D, D) if T > 1 else F_all
    return KalmanResult(
        filtered_mean=torch.stack(fm, dim=-2),
        filtered_cov=torch.stack(fc, dim=-3),
        predicted_mean=torch.stack(pm, dim=-2),
        predicted_cov=torch.stack(pc, dim=-3),
        log_likelihood=step_ll.sum(-1),
        step_log_likelihood=step_ll,
        transition=F_out,
    )


class SmootherResult(NamedTuple):
    """Output of :func:`rts_smoother`.

    Attributes
    ----------
    mean, cov : Tensor
        ``p(z_k | y_{0:T-1})``: ``(..., T, D)``, ``(..., T, D, D)``.
    cross_cov : Tensor
        ``Cov(z_{k+1}, z_k | y)``: ``(..., T-1, D, D)``.
    """

    mean: Tensor
    cov: Tensor
    cross_cov: Tensor


def _psd_solve(A: Tensor, B: Tensor) -> Tensor:
    """``A^{-1} B`` for symmetric PSD ``A``: Cholesky, pseudo-inverse where singular."""
    L, info = torch.linalg.cholesky_ex(A)
    X = torch.cholesky_solve(B, L)
    bad = info != 0
    if bool(bad.any()):
        X = X.clone()
        X[bad] = torch.linalg.pinv(A[bad], hermitian=True) @ B[bad]
    return X


def rts_smoother(result: KalmanResult) -> SmootherResult:
    """Rauch–Tung–Striebel smoother from a :func:`kalman_filter` result.

    ``J_k = P_k F_k^T (P_{k+1|k})^{-1}``; singular predicted covariances (e.g. zero
    gaps with a deterministic state) use the pseudo-inverse.
    """
    fm, fc = result.filtered_mean, result.filtered_cov
    pm, pc = result.predicted_mean, result.predicted_cov
    F_all = result.transition
    T = fm.shape[-2]
    ms, Ps = [fm[..., -1, :]], [fc[..., -1, :, :]]
    cross = []
    for k in range(T - 2, -1, -1):
        Pk = fc[..., k, :, :]
        F = F_all[..., k, :, :]
        # J^T = P_pred^{-1} F P_k
        J = _psd_solve(pc[..., k + 1, :, :], F @ Pk).mT
        m_next, P_next = ms[-1], Ps[-1]
        m = fm[..., k, :] + (J @ (m_next - pm[..., k + 1, :]).unsqueeze(-1)).squeeze(-1)
        P = _sym(Pk + J @ (P_next - pc[..., k + 1, :, :]) @ J.mT)
        cross.append(P_next @ J.mT)
        ms.append(m)
        Ps.append(P)
    ms.reverse()
    Ps.reverse()
    cross.reverse()
    D = fm.shape[-1]
    cross_t = torch.stack(cross, dim=-3) if cross else fm.new_zeros((*fm.shape[:-2], 0, D, D))
    return SmootherResult(torch.stack(ms, dim=-2), torch.stack(Ps, dim=-3), cross_t)
