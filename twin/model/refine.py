"""Per-individual refinement of the posterior of ``z`` under frozen decoders.

The amortised posterior (product of experts) is fast but carries an amortisation gap.
Refinement optimises, for every individual separately (vectorised: one Adam over all
individuals' variational parameters, whose losses do not interact), the ELBO

    sum_m tau_m * E_q[log p(x_m,observed | z)] - KL(q(z) || N(0, I))

(``tau_m``: the calibrated expert temperature of modality ``m``, so that the refined
and the amortised posterior target the same tempered posterior; 1 without
calibration)
with ``q = N(loc, L L^T)``, ``L`` diagonal or full lower-triangular, starting from
the amortised posterior.  Only observed entries enter the likelihood.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from twin.model.data import ObservedData
from twin.model.module import TwinModule


def _kl_to_standard_normal(loc: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, L L^T) || N(0, I)) per row."""
    d = loc.shape[-1]
    trace = (scale_tril**2).sum((-2, -1))
    logdet = 2 * torch.log(torch.diagonal(scale_tril, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (trace + (loc**2).sum(-1) - d - logdet)


def _inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


def refine_posterior(
    module: TwinModule,
    data: ObservedData,
    loc: torch.Tensor,
    scale_tril: torch.Tensor,
    steps: int,
    lr: float = 0.05,
    n_samples: int = 16,
    covariance: str = "diag",
    chunk_size: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Refined ``(loc, scale_tril)`` of every individual (uses the torch global RNG).

    Parameters
    ----------
    module
        The trained module; its parameters are not changed.
    data
        Observations of the individuals (rows aligned with ``loc``).
    loc, scale_tril
        Starting posterior ``(N, d)``, ``(N, d, d)``.
    steps
        Adam steps.
    lr
        Adam learning rate.
    n_samples
        Monte Carlo draws of ``z`` per step for the expected log-likelihood.
    covariance
        ``"diag"`` (mean-field) or ``"full"`` (a full lower-triangular ``L``).
    chunk_size
        Individuals optimised together.
    """
    if covariance not in ("diag", "full"):
        raise ValueError("covariance must be 'diag' or 'full'")
    if steps <= 0:
        return loc, scale_tril
    module.eval()
    frozen = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        locs, trils = [], []
        for start in range(0, len(data), chunk_size):
            rows = torch.arange(start, min(start + chunk_size, len(data)))
            part = data.take(rows.numpy())
            lo, tr = _refine_chunk(
                module, part, loc[rows], scale_tril[rows], steps, lr, n_samples, covariance
            )
            locs.append(lo)
            trils.append(tr)
    finally:
        for p, flag in zip(module.parameters(), frozen, strict=True):
            p.requires_grad_(flag)
    return torch.cat(locs), torch.cat(trils)


def _refine_chunk(
    module: TwinModule,
    data: ObservedData,
    loc0: torch.Tensor,
    tril0: torch.Tensor,
    steps: int,
    lr: float,
    n_samples: int,
    covariance: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    n, d = loc0.shape
    diag0 = torch.diagonal(tril0, dim1=-2, dim2=-1).clamp_min(1e-4)
    loc = loc0.detach().clone().requires_grad_(True)
    raw_diag = _inverse_softplus(diag0.detach()).clone().requires_grad_(True)
    params = [loc, raw_diag]
    lower = torch.tril(torch.ones(d, d, dtype=torch.bool, device=loc0.device), diagonal=-1)
    if covariance == "full":
        off = torch.where(lower, tril0.detach(), torch.zeros_like(tril0)).clone()
        off.requires_grad_(True)
        params.append(off)

    def tril() -> torch.Tensor:
        L = torch.diag_embed(F.softplus(raw_diag) + 1e-5)
        if covariance == "full":
            L = L + torch.where(lower, off, torch.zeros_like(off))
        return L

    optimizer = torch.optim.Adam(params, lr=lr)
    # decay the step size linearly to 10 % so the stochastic optimum is reached closely
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0 - 0.9 * k / steps)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        L = tril()
        eps = torch.randn(n_samples, n, d, device=loc.device, dtype=loc.dtype)
        z = loc + torch.einsum("nij,snj->sni", L, eps)
        expected_ll = module.log_likelihood(z, data, tempered=True).mean(0)
        loss = (_kl_to_standard_normal(loc, L) - expected_ll).sum()
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError("posterior refinement diverged; lower refine_lr")
        loss.backward()
        optimizer.step()
        schedule.step()
    return loc.detach(), tril().detach()
