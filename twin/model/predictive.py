"""Posterior predictive summaries and draws, vectorised over individuals and draws.

Given a Gaussian posterior over ``z`` per individual (``loc``, ``scale_tril``), the
predictive of every feature is the mixture over latent draws of ``p(x | z)``: it holds
both the latent uncertainty and the likelihood noise.  Means and sds are
Rao-Blackwellised (``E[x] = mean_s E[x | z_s]``, ``Var[x] = var_s E[x | z_s] +
mean_s Var[x | z_s]``); quantiles come from one draw of ``x`` per latent draw.
"""

from __future__ import annotations

import contextlib
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


@dataclass(frozen=True)
class PosteriorPart:
    """One component of a (mixture) posterior: a module and its Gaussian posteriors.

    ``loc`` ``(N, d)`` and ``scale_tril`` ``(N, d, d)`` are in ``module``'s latent
    space; ``n_draws`` latent draws per individual come from this part.  A single
    model is one part; an ensemble has one part per member (an equal-weight mixture
    when every part has the same number of draws).
    """

    module: TwinModule
    loc: torch.Tensor
    scale_tril: torch.Tensor
    n_draws: int


def split_draws(n_draws: int, n_parts: int) -> list[int]:
    """``n_draws`` shared as evenly as possible over ``n_parts`` (the first get one more)."""
    if n_draws < n_parts:
        raise ValueError(f"n_draws ({n_draws}) must be at least the number of members ({n_parts})")
    return [n_draws // n_parts + (k < n_draws % n_parts) for k in range(n_parts)]


@contextlib.contextmanager
def _sampling_weights(parts: Sequence[PosteriorPart]):
    with contextlib.ExitStack() as stack:
        for part in parts:
            part.module.eval()
            stack.enter_context(weight_sampling(part.module, True))
        yield


def _pooled_conditionals(
    parts: Sequence[PosteriorPart], sl: slice, covariates: torch.Tensor
) -> tuple[torch.Tensor, dict[str, list]]:
    """Latent draws and, per modality, per head: the conditional ``p(x | z)`` of every
    part's draws for the individuals ``sl``, concatenated over parts on the draw axis."""
    zs, heads = [], {}
    for part in parts:
        z = draw_latent(part.loc[sl], part.scale_tril[sl], part.n_draws)
        raw = part.module.decode(z, covariates[sl])
        zs.append(z)
        for name, block in part.module.items():
            for g, (head, r) in enumerate(block.split(raw[name])):
                heads.setdefault(name, {}).setdefault(g, (head, []))[1].append(head.conditional(r))
    return torch.cat(zs, 0), {m: list(gs.values()) for m, gs in heads.items()}


def _cat(conds: list, attr: str) -> torch.Tensor:
    return torch.cat([getattr(c, attr) for c in conds], 0)


@torch.no_grad()
def mixture_predictive_summary(
    parts: Sequence[PosteriorPart], covariates: torch.Tensor, quantiles: Sequence[float]
) -> dict[str, ModalityPredictive]:
    """Predictive mean, sd, quantiles (and category probabilities) of every feature
    under the mixture of ``parts`` (draws pooled; each part contributes its draws)."""
    first = parts[0].module
    n = parts[0].loc.shape[0]
    total = sum(p.n_draws for p in parts)
    width = sum(b.decoder.n_outputs for b in first.blocks)
    out: dict[str, list[ModalityPredictive]] = {name: [] for name in first.names}
    with _sampling_weights(parts):
        for sl in _chunks(n, total, width):
            _, heads = _pooled_conditionals(parts, sl, covariates)
            for name, block in first.items():
                m, f = sl.stop - sl.start, block.n_features
                mean = np.full((m, f), np.nan)
                sd = np.full((m, f), np.nan)
                qs = np.full((len(quantiles), m, f), np.nan)
                proba = None
                for head, conds in heads[name]:
                    idx = head.index.cpu().numpy()
                    if conds[0].probs is not None:  # categorical: one head per modality
                        p = _cat(conds, "probs").mean(0).double().cpu().numpy()  # (m, F_g, L)
                        levels = np.arange(p.shape[-1])[None, :]
                        valid = levels < np.asarray(head.n_levels)[:, None]
                        proba = np.full((m, f, p.shape[-1]), np.nan)
                        proba[:, idx, :] = np.where(valid, p, np.nan)
                        mean[:, idx] = np.where(valid, p, -1.0).argmax(-1)
                        continue
                    mu = _cat(conds, "mean").double()
                    var = mu.var(0, unbiased=False) + _cat(conds, "var").double().mean(0)
                    mean[:, idx] = mu.mean(0).cpu().numpy()
                    sd[:, idx] = var.clamp_min(0).sqrt().cpu().numpy()
                    qs[:, :, idx] = draw_quantiles(_cat(conds, "draws"), quantiles, head.discrete)
                out[name].append(ModalityPredictive(mean, sd, qs, proba))
    return {name: _concat(chunks) for name, chunks in out.items()}


def predictive_summary(
    module: TwinModule,
    loc: torch.Tensor,
    scale_tril: torch.Tensor,
    covariates: torch.Tensor,
    n_draws: int,
    quantiles: Sequence[float],
) -> dict[str, ModalityPredictive]:
    """Predictive mean, sd, quantiles (and category probabilities) of every feature."""
    part = PosteriorPart(module, loc, scale_tril, n_draws)
    return mixture_predictive_summary([part], covariates, quantiles)


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
def mixture_predictive_draws(
    parts: Sequence[PosteriorPart], covariates: torch.Tensor
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Latent draws ``(S, N, d)`` and data draws ``{m: (S, N, F)}`` (data scale) of the
    mixture of ``parts``: part ``k``'s draws follow part ``k - 1``'s on the draw axis,
    and its latent draws are in its own module's latent space."""
    first = parts[0].module
    n = parts[0].loc.shape[0]
    total = sum(p.n_draws for p in parts)
    width = sum(b.decoder.n_outputs for b in first.blocks)
    zs, out = [], {name: [] for name in first.names}
    with _sampling_weights(parts):
        for sl in _chunks(n, total, width):
            z, heads = _pooled_conditionals(parts, sl, covariates)
            zs.append(z.double().cpu().numpy())
            for name, block in first.items():
                x = np.full((total, sl.stop - sl.start, block.n_features), np.nan)
                for head, conds in heads[name]:
                    x[:, :, head.index.cpu().numpy()] = _cat(conds, "draws").double().cpu().numpy()
                out[name].append(x)
    return np.concatenate(zs, axis=1), {m: np.concatenate(v, axis=1) for m, v in out.items()}


def predictive_draws(
    module: TwinModule,
    loc: torch.Tensor,
    scale_tril: torch.Tensor,
    covariates: torch.Tensor,
    n_draws: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Latent draws ``(S, N, d)`` and data draws ``{m: (S, N, F)}`` (data scale)."""
    return mixture_predictive_draws([PosteriorPart(module, loc, scale_tril, n_draws)], covariates)
