"""Batched latent simulation: individuals x scenarios x draws x time, chunked.

:func:`simulate_latent` draws latent trajectories of a
:class:`~twin.dynamics.linear_gaussian.LinearGaussianDynamics` for every
individual under every scenario. All exact transition terms of the grid are
computed up front (one matrix exponential per distinct gap); the time recursion
then costs one matrix product over all trajectories per step.

Random numbers are reproducible independently of chunking: the individual axis
is cut into fixed *RNG blocks* whose size depends only on the problem shape, each
block gets its own seed drawn once from ``generator``, and a chunk draws the noise
of the blocks it overlaps. Any ``max_elements`` therefore gives bit-identical
results for the same seed (draws still differ between CPU and CUDA, whose normal
generators differ).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from twin.dynamics.linear_gaussian import LinearGaussianDynamics, psd_sqrt

__all__ = ["simulate_latent"]

_RNG_BLOCK_ELEMENTS = 2**20


def _block_seeds(n_blocks: int, generator: torch.Generator | None) -> list[int]:
    device = generator.device if generator is not None else "cpu"
    seeds = torch.randint(0, 2**62, (n_blocks,), generator=generator, device=device)
    return seeds.tolist()


def _fill_noise(
    Z: Tensor,
    i0: int,
    i1: int,
    n_total: int,
    block: int,
    seeds: list[int],
) -> None:
    """Write the standard normals of individuals ``[i0, i1)`` into ``Z (T, i1-i0, ...)``."""
    tail = Z.shape[2:]
    T = Z.shape[0]
    for b in range(i0 // block, (i1 - 1) // block + 1):
        b0, b1 = b * block, min((b + 1) * block, n_total)
        g = torch.Generator(device=Z.device)
        g.manual_seed(seeds[b])
        eps = torch.randn((T, b1 - b0, *tail), generator=g, dtype=Z.dtype, device=Z.device)
        lo, hi = max(i0, b0), min(i1, b1)
        Z[:, lo - i0 : hi - i0] = eps[:, lo - b0 : hi - b0]


@torch.no_grad()
def simulate_latent(
    dynamics: LinearGaussianDynamics,
    z0_mean: Tensor,
    z0_cov: Tensor,
    times: Tensor,
    exposure: Tensor | None = None,
    n_draws: int = 1,
    generator: torch.Generator | None = None,
    *,
    max_elements: int = 2**25,
    rng_block: int | None = None,
) -> Tensor:
    """Draw latent trajectories for individuals x scenarios x draws on a time grid.

    Each trajectory starts from ``z(t_0) ~ N(z0_mean, z0_cov)`` and follows the exact
    transitions of ``dynamics`` with the exposure held constant over each step.

    Parameters
    ----------
    dynamics : LinearGaussianDynamics
        The latent SDE (its discretisation is taken in its own dtype, then cast).
    z0_mean : Tensor
        ``(N, D)`` or ``(N, S, D)`` initial means; sets dtype and device of the output.
    z0_cov : Tensor
        ``(D, D)``, ``(N, D, D)`` or ``(N, S, D, D)`` initial covariances (PSD).
    times : Tensor
        ``(T,)`` grid shared by all individuals, or ``(N, T)`` per individual
        (days relative to each individual's reference; sorted).
    exposure : Tensor, optional
        ``(S, T, P)`` shared by individuals or ``(N, S, T, P)``; ``exposure[..., k, :]``
        acts over ``[t_k, t_{k+1})``. None: no inputs (one scenario unless ``z0_mean``
        has a scenario axis).
    n_draws : int, default 1
        Independent draws ``R`` per individual and scenario.
    generator : torch.Generator, optional
        Seeds the RNG blocks (default: the global generator).
    max_elements : int, default 2**25
        Upper bound on the working-set elements per chunk; the individual axis is
        processed in chunks of ``max(1, max_elements // (S R T D))`` individuals.
        Results do not depend on it.
    rng_block : int, optional
        Individuals per RNG block (default ``ceil(2**20 / (S R T D))``). Results depend
        on it, so keep it fixed to reproduce a run.

    Returns
    -------
    Tensor
        ``(N, S, R, T, D)``, computed without gradient tracking (use
        :meth:`LinearGaussianDynamics.sample_paths` to differentiate through
        samples). It is a permuted view of time-major storage
        ``(T, N, S, R, D)``; call ``.contiguous()`` if a contiguous layout is needed.
    """
    if z0_mean.dim() == 2:
        z0_mean = z0_mean[:, None, :]
    if z0_mean.dim() != 3:
        raise ValueError(f"z0_mean must be (N, D) or (N, S, D), got {tuple(z0_mean.shape)}")
    dtype, device = z0_mean.dtype, z0_mean.device
    N, S0, D = z0_mean.shape
    if D != dynamics.latent_dim:
        raise ValueError(f"z0_mean has D={D}, dynamics has latent_dim={dynamics.latent_dim}")
    times = torch.as_tensor(times, device=device)
    T = times.shape[-1]
    shared_times = times.dim() == 1
    if not shared_times and times.shape != (N, T):
        raise ValueError(f"times must be (T,) or (N, T) = ({N}, T), got {tuple(times.shape)}")
    if exposure is not None:
        exposure = torch.as_tensor(exposure, device=device)
        if exposure.dim() == 3:
            exposure = exposure[None]
        if exposure.dim() != 4 or exposure.shape[-2] != T or exposure.shape[0] not in (1, N):
            raise ValueError(
                f"exposure must be (S, T, P) or (N, S, T, P) with T={T}, N={N}; "
                f"got {tuple(exposure.shape)}"
            )
        S = max(S0, exposure.shape[1])
        if S0 not in (1, S) or exposure.shape[1] not in (1, S):
            raise ValueError("z0_mean and exposure disagree on the number of scenarios")
    else:
        S = S0
    R = int(n_draws)
    if R < 1:
        raise ValueError("n_draws must be >= 1")
    z0_cov = torch.as_tensor(z0_cov, dtype=dtype, device=device)
    if z0_cov.dim() == 2:
        z0_cov = z0_cov.expand(N, S, D, D)
    elif z0_cov.dim() == 3:
        z0_cov = z0_cov[:, None].expand(N, S, D, D)
    z0_cov = z0_cov.expand(N, S, D, D)
    z0_mean = z0_mean.expand(N, S, D)

    per_individual = S * R * T * D
    block = int(rng_block) if rng_block else max(1, math.ceil(_RNG_BLOCK_ELEMENTS / per_individual))
    chunk = max(1, int(max_elements) // per_individual)
    seeds = _block_seeds(math.ceil(N / block), generator)

    pdtype = dynamics.A.dtype
    if shared_times:
        F, Q, Gamma = dynamics.discretize(times[1:].to(pdtype) - times[:-1].to(pdtype))
        offset0 = Gamma @ dynamics.b
        Fs_T = F.to(dtype).mT.contiguous()  # (T-1, D, D), transposed for z @ F^T
        Ss_T = psd_sqrt(Q).to(dtype).mT.contiguous()

    out = torch.empty((T, N, S, R, D), dtype=dtype, device=device)
    for i0 in range(0, N, chunk):
        i1 = min(N, i0 + chunk)
        n = i1 - i0
        Z = out[:, i0:i1]
        _fill_noise(Z, i0, i1, N, block, seeds)
        # Per-chunk transition terms.
        u = None
        if exposure is not None:
            u = exposure if exposure.shape[0] == 1 else exposure[i0:i1]
            u = u[..., :-1, :].to(pdtype)  # (n|1, S|1, T-1, P)
        if shared_times:
            if u is None:
                offset = offset0.to(dtype)[None, None]  # (1, 1, T-1, D)
            else:
                drive = dynamics.drive(u)
                offset = torch.einsum("kij,nskj->nski", Gamma, drive).to(dtype)
        else:
            tt = times[i0:i1].to(pdtype)[:, None]  # (n, 1, T)
            F, Q, offset = dynamics.grid_terms(tt, u)
            Fc = F[:, 0].to(dtype)  # (n, T-1, D, D)
            Sc = psd_sqrt(Q[:, 0]).to(dtype)
            offset = offset.to(dtype)
        offset = offset.expand(n, S, T - 1, D)
        # Initial state.
        L0 = psd_sqrt(z0_cov[i0:i1])  # (n, S, D, D)
        Z[0] = z0_mean[i0:i1, :, None, :] + torch.einsum("nsij,nsrj->nsri", L0, Z[0])
        M = n * S * R
        if shared_times:
            tmp = torch.empty((M, D), dtype=dtype, device=device)
            for k in range(T - 1):
                zk, zk1 = Z[k].reshape(M, D), Z[k + 1].reshape(M, D)
                torch.mm(zk1, Ss_T[k], out=tmp)
                tmp.addmm_(zk, Fs_T[k])
                tmp.view(n, S, R, D).add_(offset[:, :, k, None, :])
                zk1.copy_(tmp)
        else:
            for k in range(T - 1):
                w = torch.einsum("nij,nsrj->nsri", Sc[:, k], Z[k + 1])
                Z[k + 1] = (
                    w
                    + torch.einsum("nij,nsrj->nsri", Fc[:, k], Z[k])
                    + offset[:, :, k, None, :]
                )
    return out.permute(1, 2, 3, 0, 4)
