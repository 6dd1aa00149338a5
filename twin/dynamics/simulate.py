"""Batched latent simulation: individuals x scenarios x draws x time, chunked.

:func:`simulate_latent` draws latent trajectories of a
:class:`~twin.dynamics.linear_gaussian.LinearGaussianDynamics` for every
individual under every scenario. All exact transition terms of the grid are
computed up front (one matrix exponential per distinct gap); the time recursion
then costs two skinny matrix products and two additions over all trajectories per
step (no Python loop over individuals, scenarios or draws).

Random numbers are reproducible independently of chunking: the individual axis
is cut into fixed *RNG blocks* whose size depends only on the problem shape (and
the device type, unless ``rng_block`` is given), each block gets its own seed drawn
once from ``generator``, and the work is done in *pieces* (a chunk cut at block
boundaries) that each draw their block's noise and propagate their slab of it. Any
``max_elements`` and any number of CPU workers therefore give bit-identical
results for the same seed (draws still differ between CPU and CUDA, whose normal
generators differ).

On the CPU, pieces run in a pool of worker threads with single-threaded torch ops
(the per-step products are far too small to gain from intra-op threads, and
intra-op threads oversubscribe a busy machine badly); ``torch.get_num_threads()``
is set to 1 for the duration of the call and restored afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch
from torch import Tensor

from twin.dynamics.linear_gaussian import LinearGaussianDynamics, psd_sqrt

__all__ = ["simulate_latent"]

#: Default RNG-block size in elements: cache-sized on the CPU, large on accelerators
#: (fewer, bigger kernel launches).
_RNG_BLOCK_ELEMENTS = {"cpu": 2**21}
_RNG_BLOCK_ELEMENTS_ACCEL = 2**24


def _block_seeds(n_blocks: int, generator: torch.Generator | None) -> list[int]:
    device = generator.device if generator is not None else "cpu"
    seeds = torch.randint(0, 2**62, (n_blocks,), generator=generator, device=device)
    return seeds.tolist()


def _draw_block(
    b: int, block: int, n_total: int, tail: tuple[int, ...], T: int, seeds: list[int], like: Tensor
) -> Tensor:
    """Standard normals of RNG block ``b``: shape ``(T, n_b, *tail)``, seeded by ``seeds[b]``."""
    b0, b1 = b * block, min((b + 1) * block, n_total)
    g = torch.Generator(device=like.device)
    g.manual_seed(seeds[b])
    return torch.randn((T, b1 - b0, *tail), generator=g, dtype=like.dtype, device=like.device)


@contextmanager
def _single_threaded_ops(active: bool) -> Iterator[None]:
    if not active:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
    num_workers: int | None = None,
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
        Individuals per RNG block (default ``ceil(E / (S R T D))`` with ``E = 2**21`` on
        the CPU and ``2**24`` on accelerators). Results depend on it, so pass it
        explicitly to reproduce a run across devices' defaults.
    num_workers : int, optional
        CPU worker threads (default ``torch.get_num_threads()``; ignored on other
        devices). Results do not depend on it.

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
    block_elements = _RNG_BLOCK_ELEMENTS.get(device.type, _RNG_BLOCK_ELEMENTS_ACCEL)
    block = int(rng_block) if rng_block else max(1, math.ceil(block_elements / per_individual))
    chunk = max(1, int(max_elements) // per_individual)
    seeds = _block_seeds(math.ceil(N / block), generator)

    pdtype = dynamics.A.dtype
    Fs_T = Ss_T = offset0 = Gamma = None
    if shared_times:
        F, Q, Gamma = dynamics.discretize(times[1:].to(pdtype) - times[:-1].to(pdtype))
        offset0 = Gamma @ dynamics.b
        Fs_T = F.to(dtype).mT.contiguous()  # (T-1, D, D), transposed for z @ F^T
        Ss_T = psd_sqrt(Q).to(dtype).mT.contiguous()

    out = torch.empty((T, N, S, R, D), dtype=dtype, device=device)
    cpu = device.type == "cpu"
    workers = (num_workers or torch.get_num_threads()) if cpu else 1
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        with _single_threaded_ops(pool is not None):
            for i0 in range(0, N, chunk):
                i1 = min(N, i0 + chunk)
                terms = _chunk_terms(
                    i0,
                    i1,
                    S,
                    T,
                    D,
                    dtype,
                    dynamics,
                    z0_mean,
                    z0_cov,
                    times,
                    exposure,
                    offset0,
                    Gamma,
                )
                pieces = [
                    (b, max(i0, b * block), min(i1, (b + 1) * block))
                    for b in range(i0 // block, (i1 - 1) // block + 1)
                ]

                def run(piece, i0=i0, terms=terms):
                    b, lo, hi = piece
                    eps = _draw_block(b, block, N, (S, R, D), T, seeds, out)
                    _propagate_piece(
                        out[:, lo:hi],
                        eps[:, lo - b * block : hi - b * block],
                        slice(lo - i0, hi - i0),
                        terms,
                        Fs_T,
                        Ss_T,
                    )

                if pool is None:
                    for piece in pieces:
                        run(piece)
                else:
                    list(pool.map(run, pieces))
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return out.permute(1, 2, 3, 0, 4)


def _chunk_terms(
    i0: int,
    i1: int,
    S: int,
    T: int,
    D: int,
    dtype: torch.dtype,
    dynamics: LinearGaussianDynamics,
    z0_mean: Tensor,
    z0_cov: Tensor,
    times: Tensor,
    exposure: Tensor | None,
    offset0: Tensor | None,
    Gamma: Tensor | None,
) -> dict[str, Tensor]:
    """Per-chunk terms for individuals ``[i0, i1)``: offsets, initial factors and, for
    per-individual grids, transition matrices and noise factors."""
    pdtype = dynamics.A.dtype
    n = i1 - i0
    u = None
    if exposure is not None:
        u = exposure if exposure.shape[0] == 1 else exposure[i0:i1]
        u = u[..., :-1, :].to(pdtype)  # (n|1, S|1, T-1, P)
    terms: dict[str, Tensor] = {}
    if Gamma is not None:  # shared grid
        if u is None:
            offset = offset0.to(dtype)[None, None]  # (1, 1, T-1, D)
        else:
            offset = torch.einsum("kij,nskj->nski", Gamma, dynamics.drive(u)).to(dtype)
    else:
        tt = times[i0:i1].to(pdtype)[:, None]  # (n, 1, T)
        F, Q, offset = dynamics.grid_terms(tt, u)
        terms["F"] = F[:, 0].to(dtype)  # (n, T-1, D, D)
        terms["S"] = psd_sqrt(Q[:, 0]).to(dtype)
        offset = offset.to(dtype)
    terms["offset"] = offset.expand(n, S, T - 1, D)
    terms["L0"] = psd_sqrt(z0_cov[i0:i1])  # (n, S, D, D)
    terms["m0"] = z0_mean[i0:i1]
    return terms


def _propagate_piece(
    Z: Tensor,
    eps: Tensor,
    rows: slice,
    terms: dict[str, Tensor],
    Fs_T: Tensor | None,
    Ss_T: Tensor | None,
) -> None:
    """Fill ``Z (T, p, S, R, D)`` from standard normals ``eps`` of the same shape."""
    T, p, S, R, D = Z.shape
    M = p * S * R
    off = terms["offset"][rows]
    Z[0] = terms["m0"][rows, :, None, :] + torch.einsum(
        "nsij,nsrj->nsri", terms["L0"][rows], eps[0]
    )
    if Fs_T is not None:
        # mm + add_ beats addmm_ (beta=1) for these skinny products on CPU BLAS.
        tmp = torch.empty((M, D), dtype=Z.dtype, device=Z.device)
        for k in range(T - 1):
            zk1 = Z[k + 1].view(M, D)
            torch.mm(eps[k + 1].reshape(M, D), Ss_T[k], out=zk1)  # S_k eps
            torch.mm(Z[k].view(M, D), Fs_T[k], out=tmp)
            zk1.add_(tmp)  # + F_k z_k
            Z[k + 1].add_(off[:, :, k, None, :])  # + Gamma_k (B u_k + b)
    else:
        Fp, Sp = terms["F"][rows], terms["S"][rows]
        for k in range(T - 1):
            Z[k + 1] = (
                torch.einsum("nij,nsrj->nsri", Sp[:, k], eps[k + 1])
                + torch.einsum("nij,nsrj->nsri", Fp[:, k], Z[k])
                + off[:, :, k, None, :]
            )
