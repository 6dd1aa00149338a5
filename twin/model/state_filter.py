"""Filtering and prediction of the latent state for linear and neural dynamics.

One entry point for the dynamic model whatever its dynamics:

* :class:`~twin.dynamics.LinearGaussianDynamics`: the exact batched Kalman filter
  (:func:`twin.dynamics.kalman_filter`) and exact moment propagation over any gap.
* :class:`~twin.dynamics.NeuralDynamics`: *assumed-density* filtering. Each prediction
  step propagates the Gaussian moments by Monte Carlo through the learned SDE
  (:meth:`NeuralDynamics.transition`); each measurement step is the same exact
  product-of-experts update (:func:`twin.dynamics.gaussian_update`) as in the linear
  case. The log-likelihood is then approximate (Gaussian predictive per step).

The loops run over time steps only; individuals are batched.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from twin.dynamics import KalmanResult, LinearGaussianDynamics, gaussian_update, kalman_filter
from twin.model.emission import GaussianEmission

__all__ = ["filter_states", "is_linear", "predict_moments"]

_LOG_2PI = math.log(2.0 * math.pi)


def is_linear(dynamics: torch.nn.Module) -> bool:
    """Whether ``dynamics`` has exact Gaussian transitions."""
    return isinstance(dynamics, LinearGaussianDynamics)


def _sym(x: Tensor) -> Tensor:
    return 0.5 * (x + x.mT)


def filter_states(
    dynamics: torch.nn.Module,
    emission: GaussianEmission,
    y: Tensor,
    times: Tensor,
    mask: Tensor,
    init_mean: Tensor,
    init_cov: Tensor,
    inputs: Tensor | None = None,
    *,
    n_samples: int = 128,
) -> KalmanResult:
    """Filter ``(N, T, F)`` observations on ``times (N, T)`` from ``N(init_mean, init_cov)``.

    ``init_*`` is the state distribution at ``times[:, 0]``; ``inputs (N, T, P)`` row
    ``k`` acts over ``[t_k, t_{k+1})``. Exact for linear dynamics; assumed-density
    filtering with ``n_samples`` Monte Carlo draws per step for neural dynamics (the
    ``transition`` field of the result is then undefined and zero).
    """
    if is_linear(dynamics):
        return kalman_filter(
            dynamics,
            y,
            times,
            emission.H,
            emission.R,
            mask=mask,
            obs_offset=emission.c,
            init_mean=init_mean,
            init_cov=init_cov,
            inputs=inputs,
        )
    return _moment_filter(
        dynamics, emission, y, times, mask, init_mean, init_cov, inputs, n_samples
    )


def _moment_filter(
    dynamics: torch.nn.Module,
    emission: GaussianEmission,
    y: Tensor,
    times: Tensor,
    mask: Tensor,
    m: Tensor,
    P: Tensor,
    inputs: Tensor | None,
    n_samples: int,
) -> KalmanResult:
    dtype = y.dtype
    sd = emission.R.to(dtype).sqrt()
    resid = torch.where(mask, y - emission.c.to(dtype), torch.zeros_like(y))
    yw = resid / sd
    Hw = emission.H.to(dtype) / sd[:, None]
    half_logdet = (mask.to(dtype) * torch.log(sd)).sum(-1)
    T, D = y.shape[-2], m.shape[-1]
    pm, pc, fm, fc, ll = [], [], [], [], []
    for k in range(T):
        if k > 0:
            dt = times[:, k] - times[:, k - 1]
            u = None if inputs is None else inputs[:, k - 1]
            m, P = _mc_transition(dynamics, m, P, dt, u, n_samples)
        pm.append(m)
        pc.append(P)
        upd = gaussian_update(
            m, P, expert_prec_factor=Hw.mT, expert_target=yw[:, k], mask=mask[:, k]
        )
        m, P = upd.mean, upd.cov
        fm.append(m)
        fc.append(P)
        ll.append(upd.log_norm - half_logdet[:, k])
    step_ll = torch.stack(ll, dim=-1)
    N = y.shape[0]
    return KalmanResult(
        filtered_mean=torch.stack(fm, dim=-2),
        filtered_cov=torch.stack(fc, dim=-3),
        predicted_mean=torch.stack(pm, dim=-2),
        predicted_cov=torch.stack(pc, dim=-3),
        log_likelihood=step_ll.sum(-1),
        step_log_likelihood=step_ll,
        transition=y.new_zeros((N, max(T - 1, 0), D, D)),
    )


def _mc_transition(
    dynamics: torch.nn.Module,
    m: Tensor,
    P: Tensor,
    dt: Tensor,
    u: Tensor | None,
    n_samples: int,
) -> tuple[Tensor, Tensor]:
    """Monte Carlo moments after gaps ``dt (N,)``; a zero gap is an exact identity."""
    moving = dt > 0
    if not bool(moving.any()):
        return m, P
    m_new, P_new = dynamics.transition(m, P, dt, u, n_samples=n_samples)
    D = m.shape[-1]
    P_new = _sym(P_new) + 1e-9 * torch.eye(D, dtype=m.dtype, device=m.device)
    m = torch.where(moving[:, None], m_new, m)
    P = torch.where(moving[:, None, None], P_new, P)
    return m, P


def predict_moments(
    dynamics: torch.nn.Module,
    mean: Tensor,
    cov: Tensor,
    times: Tensor,
    inputs: Tensor | None = None,
    *,
    n_samples: int = 512,
) -> tuple[Tensor, Tensor]:
    """State moments ``(N, T, D)``, ``(N, T, D, D)`` on ``times (N, T)`` from ``N(mean, cov)`` at ``times[:, 0]``.

    No observations: the exact prediction ``F m + Gamma (B u + b)``,
    ``F P F^T + Q`` step by step for linear dynamics (``inputs[:, k]`` held over
    ``[t_k, t_{k+1})``), Monte Carlo moments for neural dynamics.
    """
    means, covs = [mean], [cov]
    T = times.shape[-1]
    if is_linear(dynamics):
        if T > 1:
            F, Q, off = dynamics.grid_terms(times.to(dynamics.A.dtype), inputs)
            F, Q, off = F.to(mean.dtype), Q.to(mean.dtype), off.to(mean.dtype)
            m, P = mean, cov
            for k in range(T - 1):
                m = (F[:, k] @ m.unsqueeze(-1)).squeeze(-1) + off[:, k]
                P = _sym(F[:, k] @ P @ F[:, k].mT + Q[:, k])
                means.append(m)
                covs.append(P)
    else:
        m, P = mean, cov
        for k in range(T - 1):
            dt = times[:, k + 1] - times[:, k]
            u = None if inputs is None else inputs[:, k]
            m, P = _mc_transition(dynamics, m, P, dt, u, n_samples)
            means.append(m)
            covs.append(P)
    return torch.stack(means, dim=1), torch.stack(covs, dim=1)
