"""Nonlinear latent dynamics: a learned drift behind the linear model's interface.

``dz = (A z + B u + b + g_theta(z, u)) dt + L dW``: the linear-Gaussian model of
:mod:`twin.dynamics.linear_gaussian` plus an MLP residual ``g_theta`` whose output
layer starts at zero, so a fresh model *is* the linear model and learning only has
to find the nonlinearity. There is no closed-form transition, so

* :meth:`NeuralDynamics.sample_paths` integrates the SDE by Euler–Maruyama with
  sub-steps of at most ``max_step`` days (each grid gap is split into the same
  number of equal sub-steps for the whole batch; a zero gap is an exact identity);
* :meth:`NeuralDynamics.transition` propagates Gaussian moments by sampling:
  ``n_samples`` draws of ``N(mean, cov)`` are integrated and their mean and
  covariance returned (Monte-Carlo error ``O(n_samples^-1/2)``).

The input is held constant within each grid step, as in the linear model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from twin.dynamics.linear_gaussian import LinearGaussianDynamics, psd_sqrt

__all__ = ["NeuralDynamics"]


class NeuralDynamics(nn.Module):
    """Linear SDE plus a learned MLP drift residual, integrated by Euler–Maruyama.

    Parameters
    ----------
    latent_dim, input_dim : int
        ``D`` and ``P``.
    hidden : int, default 64
        Width of the residual MLP.
    layers : int, default 2
        Hidden layers of the MLP.
    max_step : float, default 0.5
        Largest Euler–Maruyama sub-step (days).
    linear : LinearGaussianDynamics, optional
        Linear part (default: a fresh stable one with the same dims); keyword
        arguments ``**linear_kw`` go to its constructor.
    """

    def __init__(
        self,
        latent_dim: int,
        input_dim: int = 0,
        *,
        hidden: int = 64,
        layers: int = 2,
        max_step: float = 0.5,
        linear: LinearGaussianDynamics | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        **linear_kw,
    ) -> None:
        super().__init__()
        if max_step <= 0:
            raise ValueError("max_step must be > 0")
        self.latent_dim, self.input_dim, self.max_step = latent_dim, input_dim, float(max_step)
        self.linear = linear or LinearGaussianDynamics(
            latent_dim, input_dim, dtype=dtype, device=device, **linear_kw
        )
        kw = {"dtype": dtype or self.linear.b.dtype, "device": device}
        dims = [latent_dim + input_dim] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            mods += [nn.Linear(a, b, **kw), nn.SiLU()]
        out = nn.Linear(dims[-1], latent_dim, **kw)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.residual = nn.Sequential(*mods, out)

    def drift(self, z: Tensor, u: Tensor | None = None) -> Tensor:
        """``A z + B u + b + g(z, u)`` for ``z (..., D)``, ``u (..., P)``."""
        lin = z @ self.linear.A.mT + self.linear.drive(u)
        if self.input_dim:
            if u is None:
                u = z.new_zeros((*z.shape[:-1], self.input_dim))
            u = u.to(z.dtype).expand(*z.shape[:-1], self.input_dim)
            x = torch.cat([z, u], dim=-1)
        else:
            x = z
        return lin + self.residual(x)

    def _integrate(
        self, z: Tensor, dt: Tensor, u: Tensor | None, generator: torch.Generator | None
    ) -> Tensor:
        """Euler–Maruyama over gaps ``dt`` (broadcast to ``z``'s batch) with ``u`` held."""
        dt = torch.as_tensor(dt, dtype=z.dtype, device=z.device)
        if dt.numel() and bool((dt < 0).any()):
            raise ValueError("time gaps must be non-negative")
        dt_max = float(dt.max()) if dt.numel() else 0.0
        n_sub = max(1, math.ceil(dt_max / self.max_step))
        h = (dt / n_sub).expand(z.shape[:-1])[..., None]
        L = self.linear.L.to(z.dtype)
        for _ in range(n_sub):
            eps = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
            z = z + self.drift(z, u) * h + (eps @ L.mT) * h.sqrt()
        return z

    def transition(
        self,
        mean: Tensor,
        cov: Tensor,
        dt: Tensor | float,
        u: Tensor | None = None,
        *,
        n_samples: int = 256,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Moments after a gap ``dt`` by Monte Carlo: ``(..., D)``, ``(..., D, D)``."""
        S0 = psd_sqrt(cov)
        eps = torch.randn(
            (n_samples, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device
        )
        z = mean + (S0 @ eps.unsqueeze(-1)).squeeze(-1)
        dt = torch.as_tensor(dt, dtype=mean.dtype, device=mean.device)
        z = self._integrate(z, dt.expand(z.shape[:-1]), u, generator)
        m = z.mean(0)
        dev = z - m
        c = torch.einsum("s...i,s...j->...ij", dev, dev) / max(1, n_samples - 1)
        return m, 0.5 * (c + c.mT)

    def sample_paths(
        self,
        z0: Tensor,
        times: Tensor,
        u_grid: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Trajectories ``(..., T, D)`` from ``z0 (..., D)`` on ``times (T,)`` or ``(..., T)``."""
        times = torch.as_tensor(times, dtype=z0.dtype, device=z0.device)
        T = times.shape[-1]
        z = z0
        out = [z]
        for k in range(T - 1):
            dt = times[..., k + 1] - times[..., k]
            u = None if u_grid is None else u_grid[..., k, :]
            batch = torch.broadcast_shapes(z.shape[:-1], dt.shape)
            if u is not None:
                batch = torch.broadcast_shapes(batch, u.shape[:-1])
            z = self._integrate(z.expand(*batch, z.shape[-1]), dt, u, generator)
            out.append(z)
        batch = out[-1].shape[:-1]
        return torch.stack([x.expand(*batch, x.shape[-1]) for x in out], dim=-2)
