"""Posterior predictive summaries and draws, vectorised over individuals and draws.

Given a Gaussian posterior over ``z`` per individual (``loc``, ``scale_tril``), the
predictive of every feature is the mixture over latent draws of ``p(x | z)``: it holds
both the latent uncertainty and the likelihood noise.  Means and sds are
Rao-Blackwellised (``E[x] = mean_s E[x | z_s]``, ``Var[x] = var_s E[x | z_s] +
mean_s Var[x | z_s]``); quantiles come from one draw of ``x`` per latent draw.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from twin.model.module import TwinModule
from twin.nn.layers import weight_sampling

#: Upper bound on draws x individuals x outputs held at once.
_CHUNK_ELEMENTS = 4_000_000


@dataclass
class ModalityPredictive:
    """Predictive summary of one modality (data scale, numpy, float64).

    ``mean``/``sd``: ``(N, F)``; ``quantiles``: ``(Q, N, F)``; ``proba``:
    ``(N, F, max_levels)`` for modalities with categorical features (NaN elsewhere),
    else None.  Categorical features have the most probable level code as ``mean`` and
    NaN ``sd``/quantiles; binary features the probability of 1 as ``mean``.
    """

    mean: np.ndarray
    sd: np.ndarray
    quantiles: np.ndarray
    proba: np.ndarray | None


def weight_sampling_on(fn):
    """Run ``fn(module, ...)`` with the module's Bayesian weights sampled per draw."""

    @functools.wraps(fn)
    def wrapped(module, *args, **kwargs):
        with weight_sampling(module, True):
            return fn(module, *args, **kwargs)

    return wrapped


def draw_latent(loc: torch.Tensor, scale_tril: torch.Tensor, n_draws: int) -> torch.Tensor:
    """``(n_draws, N, d)`` draws of ``z ~ N(loc, L L^T)`` (uses the torch global RNG)."""
    eps = torch.randn((n_draws, *loc.shape), device=loc.device, dtype=loc.dtype)
    return loc + torch.einsum("nij,snj->sni", scale_tril, eps)


def draw_quantiles(draws: torch.Tensor, levels: Sequence[float], discrete: bool) -> np.ndarray:
    """Empirical quantiles over the first (draw) axis, ``(len(levels), ...)`` float64.

    Continuous draws interpolate linearly between order statistics (as
    ``numpy.quantile``); discrete ones take the nearest draw, so quantiles of counts
    and categories stay integers.  One partial sort finds every order statistic needed.
    """
    arr = draws.detach().cpu().numpy()
    n = arr.shape[0]
    picks = []
    for level in levels:
        pos = level * (n - 1)
        if discrete:
            k = int(round(pos))
            picks.append((k, k, 0.0))
        else:
            lo = int(np.floor(pos))
            picks.append((lo, min(lo + 1, n - 1), pos - lo))
    kth = sorted({k for lo, hi, _ in picks for k in (lo, hi)})
    part = np.partition(arr, kth, axis=0)
    out = [
        part[lo].astype(np.float64) * (1 - frac) + part[hi].astype(np.float64) * frac
        for lo, hi, frac in picks
    ]
    return np.stack(out)


def _chunks(n: int, n_draws: int, width: int) -> list[slice]:
    size = max(1, _CHUNK_ELEMENTS // max(1, n_draws * width))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
@weight_sampling_on
def predictive_summary(
    module: TwinModule,
    loc: torch.Tensor,
    scale_tril: torch.Tensor,
    covariates: torch.Tensor,
    n_draws: int,
    quantiles: Sequence[float],
) -> dict[str, ModalityPredictive]:
    """Predictive mean, sd, quantiles (and category probabilities) of every feature."""
    module.eval()
    n = loc.shape[0]
    width = sum(b.decoder.n_outputs for b in module.blocks)
    parts: dict[str, list[ModalityPredictive]] = {name: [] for name in module.names}
    for sl in _chunks(n, n_draws, width):
        z = draw_latent(loc[sl], scale_tril[sl], n_draws)
        raw = module.decode(z, covariates[sl])
        for name, block in module.items():
            m = sl.stop - sl.start
            f = block.n_features
            mean = np.full((m, f), np.nan)
            sd = np.full((m, f), np.nan)
            qs = np.full((len(quantiles), m, f), np.nan)
            proba = None
            for head, r in block.split(raw[name]):
                cond = head.conditional(r)
                idx = head.index.cpu().numpy()
                if cond.probs is not None:  # categorical: one head per modality
                    p = cond.probs.mean(0).double().cpu().numpy()  # (m, F_g, L)
                    levels = np.arange(p.shape[-1])[None, :]
                    valid = levels < np.asarray(head.n_levels)[:, None]
                    proba = np.full((m, f, p.shape[-1]), np.nan)
                    proba[:, idx, :] = np.where(valid, p, np.nan)
                    mean[:, idx] = np.where(valid, p, -1.0).argmax(-1)
                    continue
                mu = cond.mean.double()
                var = mu.var(0, unbiased=False) + cond.var.double().mean(0)
                mean[:, idx] = mu.mean(0).cpu().numpy()
                sd[:, idx] = var.clamp_min(0).sqrt().cpu().numpy()
                qs[:, :, idx] = draw_quantiles(cond.draws, quantiles, head.discrete)
            parts[name].append(ModalityPredictive(mean, sd, qs, proba))
    return {name: _concat(chunks) for name, chunks in parts.items()}


def _concat(chunks: list[ModalityPredictive]) -> ModalityPredictive:
    proba = None
    if chunks[0].proba is not None:
        proba = np.concatenate([c.proba for c in chunks], axis=0)
    return ModalityPredictive(
        np.concatenate([c.mean for c in chunks], axis=0),
        np.concatenate([c.sd for c in chunks], axis=0),
        np.concatenate([c.quantiles for c in chunks], axis=1),
        proba,
    )


@torch.no_grad()
@weight_sampling_on
def predictive_draws(
    module: TwinModule,
    loc: torch.Tensor,
    scale_tril: torch.Tensor,
    covariates: torch.Tensor,
    n_draws: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Latent draws ``(S, N, d)`` and data draws ``{m: (S, N, F)}`` (data scale)."""
    module.eval()
    n = loc.shape[0]
    width = sum(b.decoder.n_outputs for b in module.blocks)
    zs, out = [], {name: [] for name in module.names}
    for sl in _chunks(n, n_draws, width):
        z = draw_latent(loc[sl], scale_tril[sl], n_draws)
        raw = module.decode(z, covariates[sl])
        zs.append(z.double().cpu().numpy())
        for name, block in module.items():
            x = np.full((n_draws, sl.stop - sl.start, block.n_features), np.nan)
            for head, r in block.split(raw[name]):
                x[:, :, head.index.cpu().numpy()] = head.conditional(r).draws.double().cpu().numpy()
            out[name].append(x)
    return np.concatenate(zs, axis=1), {m: np.concatenate(v, axis=1) for m, v in out.items()}
