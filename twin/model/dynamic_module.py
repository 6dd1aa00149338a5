"""The parameters of the latent dynamic model in one torch module.

``DynamicModule`` holds the latent SDE (:class:`~twin.dynamics.LinearGaussianDynamics`
or :class:`~twin.dynamics.NeuralDynamics`), the Gaussian emission and the initial-state
prior. :func:`build_dynamics` sets the starting point of training: a stable drift
whose decay times are spread geometrically over the time scales of the data (from
the typical gap between visits to beyond the longest follow-up), so that slow
coordinates start as near-constant patient-specific levels (random effects) and
fast ones as short-lived deviations; the diffusion of each coordinate starts at a
stationary variance of 1/4 in latent units.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from twin.dynamics import LinearGaussianDynamics, NeuralDynamics
from twin.model.emission import GaussianEmission
from twin.model.initial_state import InitialStatePrior

__all__ = ["DynamicModule", "build_dynamics", "default_timescales"]


def _inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


def default_timescales(times: np.ndarray, n_steps: np.ndarray) -> tuple[float, float]:
    """``(shortest, longest)`` starting decay times (days) from observation times ``(N, T)``.

    Shortest: the median positive gap between consecutive steps; longest: four times
    the longest follow-up. Falls back to (1, 100) days without usable gaps.
    """
    real = np.arange(times.shape[1])[None, :] < n_steps[:, None]
    gaps = np.diff(times, axis=1)[real[:, 1:]]
    gaps = gaps[gaps > 0]
    span = np.where(n_steps > 0, np.nanmax(np.where(real, times, -np.inf), 1), 0) - np.where(
        n_steps > 0, np.nanmin(np.where(real, times, np.inf), 1), 0
    )
    short = float(np.median(gaps)) if gaps.size else 1.0
    long = 4.0 * float(span.max()) if span.size and span.max() > 0 else 100.0 * short
    return short, max(long, 2.0 * short)


def build_dynamics(
    kind: str,
    latent_dim: int,
    n_agents: int,
    timescales: tuple[float, float],
    *,
    dtype: torch.dtype,
    device: torch.device,
    neural: dict | None = None,
    trend_blocks: int = 0,
) -> nn.Module:
    """A fresh stable linear (``kind="linear"``) or neural SDE with spread decay times.

    ``trend_blocks`` pairs of coordinates ``(2k, 2k+1)`` start instead as slow
    *level-and-trend* blocks: both decay on the longest time scale and are coupled
    by a slow rotation ``A[2k, 2k+1] = -A[2k+1, 2k] = omega`` (``omega`` = 1 / longest
    time scale), so that over a follow-up much shorter than ``1 / omega`` the first
    coordinate moves linearly at a rate set by the second (``sin(omega t) ~ omega t``):
    a patient-specific level and slope, as in a local linear trend model, within the
    stable family.
    """
    short, long = timescales
    linear = LinearGaussianDynamics(
        latent_dim, n_agents, drift="stable", dtype=dtype, device=device
    )
    if latent_dim == 1:
        scales = torch.tensor([math.sqrt(short * long)], dtype=dtype)
    else:
        scales = torch.logspace(math.log10(long), math.log10(short), latent_dim, dtype=dtype)
    rates = (1.0 / scales).to(device)
    with torch.no_grad():
        floor = 1e-7
        linear.sym_factor.copy_(
            math.sqrt(floor) * torch.eye(latent_dim, dtype=dtype, device=device)
        )
        linear.rate_raw.copy_(_inverse_softplus((rates - floor).clamp_min(1e-9)))
        linear.diff_diag_raw.copy_(_inverse_softplus((0.5 * rates).sqrt()))
        n_blocks = min(int(trend_blocks), latent_dim // 2)
        if n_blocks:
            omega = 1.0 / long
            slow = 1.0 / (4.0 * long)
            for k in range(n_blocks):
                i, j = 2 * k, 2 * k + 1
                linear.rate_raw[[i, j]] = _inverse_softplus(
                    torch.tensor(slow, dtype=dtype, device=device)
                )
                linear.skew_raw[i, j] = omega
                # level: diffusion of a slowly wandering level; trend: nearly fixed
                linear.diff_diag_raw[i] = _inverse_softplus(
                    torch.tensor(math.sqrt(0.05 / short), dtype=dtype, device=device)
                )
                linear.diff_diag_raw[j] = _inverse_softplus(
                    torch.tensor(math.sqrt(0.01 / long), dtype=dtype, device=device)
                )
    if kind == "linear":
        return linear
    if kind != "neural":
        raise ValueError(f"dynamics must be 'linear' or 'neural', got {kind!r}")
    opts = dict(neural or {})
    return NeuralDynamics(
        latent_dim,
        n_agents,
        hidden=int(opts.get("hidden", 32)),
        layers=int(opts.get("layers", 2)),
        max_step=float(opts.get("max_step") or max(short / 8.0, 1e-3)),
        linear=linear,
        dtype=dtype,
        device=device,
    )


class DynamicModule(nn.Module):
    """Dynamics + emission + initial-state prior of a :class:`~twin.model.dynamic_model.DynamicTwinModel`.

    The buffer ``B_cov`` ``(D P, D P)`` holds the posterior covariance of the input
    matrix ``vec(B)`` (row-major) given the other parameters (zero: not computed);
    scenario simulations draw ``B`` from it so contrasts carry the uncertainty of
    the learned agent effects.
    """

    def __init__(
        self,
        dynamics: nn.Module,
        emission: GaussianEmission,
        initial: InitialStatePrior,
    ) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.emission = emission
        self.initial = initial
        n = self.linear.B.numel()
        self.register_buffer("B_cov", self.linear.B.new_zeros((n, n)))

    @property
    def linear(self) -> LinearGaussianDynamics:
        """The linear part of the dynamics (the dynamics themselves when linear)."""
        return getattr(self.dynamics, "linear", self.dynamics)
