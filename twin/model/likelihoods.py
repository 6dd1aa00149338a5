"""Likelihood heads: raw decoder outputs -> distributions of one group of features.

Inside a modality, features are grouped by likelihood family (all Gaussian features,
all categorical features, ...).  A head owns the per-feature parameters of its family
(learned scale, degrees of freedom, dispersion) and the standardisation of its
features, and knows how to

* turn stored values into the likelihood's target (:meth:`LikelihoodHead.target`),
* build the (Pyro) distribution of the target given raw decoder outputs
  (:meth:`LikelihoodHead.distribution`), and
* give the conditional mean, variance and draws on the data scale
  (:meth:`LikelihoodHead.conditional`), from which predictive summaries are mixed.

Continuous features are modelled on the standardised scale ``(x - center) / scale``
with training means and sds stored as buffers (saved with the model).
"""

from __future__ import annotations

from typing import NamedTuple

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

_MIN_SCALE = 1e-3
_MIN_DF = 2.1
_PAD_LOGIT = -1e9


class Conditional(NamedTuple):
    """``p(x | z)`` summarised on the data scale, one row per latent draw.

    ``mean``/``var``/``draws`` have shape ``(..., n_features)``; ``probs`` (categorical
    heads only) ``(..., n_features, n_levels)``.
    """

    mean: torch.Tensor
    var: torch.Tensor
    draws: torch.Tensor
    probs: torch.Tensor | None = None


def _inverse_softplus(x: float) -> float:
    return float(torch.log(torch.expm1(torch.tensor(x))))


class LikelihoodHead(nn.Module):
    """A group of features of one modality sharing a likelihood family.

    Parameters
    ----------
    index
        Positions of the group's features in the modality's feature axis.
    """

    family: str = ""
    #: Whether draws are integers (quantiles then use the nearest draw, not interpolation).
    discrete: bool = False

    def __init__(self, index: list[int]):
        super().__init__()
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long))

    @property
    def n_features(self) -> int:
        return int(self.index.numel())

    @property
    def n_outputs(self) -> int:
        """Width of the raw decoder output this head consumes."""
        return self.n_features

    def fit_statistics(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        """Set data-dependent buffers from training values ``(N, n_features)``."""

    def target(self, values: torch.Tensor) -> torch.Tensor:
        """Stored values ``(..., n_features)`` -> the scale the likelihood lives on."""
        return values

    def distribution(self, raw: torch.Tensor) -> dist.Distribution:
        """Distribution of the target, batch shape ``(..., n_features)``."""
        raise NotImplementedError

    def conditional(self, raw: torch.Tensor) -> Conditional:
        """Mean, variance and one draw of ``x | z`` on the data scale."""
        raise NotImplementedError

    def log_prob(self, raw: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sum over observed entries of ``log p(x | z)``, shape ``raw.shape[:-1]``."""
        target = torch.where(mask, self.target(values), self.placeholder(values))
        lp = self.distribution(raw).log_prob(target)
        return torch.where(mask, lp, lp.new_zeros(())).sum(-1)

    def placeholder(self, values: torch.Tensor) -> torch.Tensor:
        """A valid target value used at unobserved entries (masked out of the likelihood)."""
        return torch.zeros_like(values)

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}"


class GaussianHead(LikelihoodHead):
    """Gaussian on the standardised scale with a learned scale per feature."""

    family = "gaussian"

    def __init__(self, index: list[int]):
        super().__init__(index)
        n = len(index)
        self.register_buffer("center", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))
        self.raw_sigma = nn.Parameter(torch.full((n,), _inverse_softplus(1.0)))

    @property
    def sigma(self) -> torch.Tensor:
        """Noise sd per feature on the standardised scale."""
        return F.softplus(self.raw_sigma) + _MIN_SCALE

    def fit_statistics(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        center, scale = masked_mean_sd(values, mask)
        self.center.copy_(center)
        self.scale.copy_(scale)

    def target(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.center) / self.scale

    def distribution(self, raw: torch.Tensor) -> dist.Distribution:
        return dist.Normal(raw, self.sigma.expand_as(raw))

    def _noise_var(self) -> torch.Tensor:
        return self.sigma**2

    def conditional(self, raw: torch.Tensor) -> Conditional:
        mean = raw * self.scale + self.center
        var = (self._noise_var() * self.scale**2).expand_as(raw)
        draws = self.distribution(raw).sample() * self.scale + self.center
        return Conditional(mean, var, draws)


class StudentTHead(GaussianHead):
    """Student-t on the standardised scale: learned scale and degrees of freedom (> 2.1)."""

    family = "student_t"

    def __init__(self, index: list[int]):
        super().__init__(index)
        self.raw_df = nn.Parameter(torch.full((len(index),), _inverse_softplus(5.0 - _MIN_DF)))

    @property
    def df(self) -> torch.Tensor:
        return F.softplus(self.raw_df) + _MIN_DF

    def distribution(self, raw: torch.Tensor) -> dist.Distribution:
        return dist.StudentT(self.df.expand_as(raw), raw, self.sigma.expand_as(raw))

    def _noise_var(self) -> torch.Tensor:
        df = self.df
        return self.sigma**2 * df / (df - 2.0)


class BernoulliHead(LikelihoodHead):
    """Bernoulli with logits from the decoder; values are 0/1."""

    family = "bernoulli"
    discrete = True

    def distribution(self, raw: torch.Tensor) -> dist.Distribution:
        return dist.Bernoulli(logits=raw)

    def conditional(self, raw: torch.Tensor) -> Conditional:
        p = torch.sigmoid(raw)
        return Conditional(p, p * (1 - p), torch.bernoulli(p))


class CategoricalHead(LikelihoodHead):
    """Categorical per feature; features may have different numbers of levels.

    The decoder emits one logit per level of every feature, concatenated; they are
    gathered into a ``(..., n_features, max_levels)`` array padded with ``-1e9``.
    """

    family = "categorical"
    discrete = True

    def __init__(self, index: list[int], n_levels: list[int]):
        super().__init__(index)
        if len(n_levels) != len(index):
            raise ValueError("one level count per categorical feature is needed")
        self.n_levels = [int(n) for n in n_levels]
        total, width = sum(self.n_levels), max(self.n_levels)
        gather = torch.full((len(index), width), total, dtype=torch.long)  # pad -> extra column
        start = 0
        for j, n in enumerate(self.n_levels):
            gather[j, :n] = torch.arange(start, start + n)
            start += n
        self.register_buffer("gather", gather)

    @property
    def n_outputs(self) -> int:
        return sum(self.n_levels)

    @property
    def max_levels(self) -> int:
        return max(self.n_levels)

    def logits(self, raw: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([raw, raw.new_full((*raw.shape[:-1], 1), _PAD_LOGIT)], dim=-1)
        return padded[..., self.gather]

    def target(self, values: torch.Tensor) -> torch.Tensor:
        return values.long()

    def placeholder(self, values: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(values, dtype=torch.long)

    def distribution(self, raw: torch.Tensor) -> dist.Distribution:
        return dist.Categorical(logits=self.logits(raw))

    def conditional(self, raw: torch.Tensor) -> Conditional:
        d = self.distribution(raw)
        probs = d.probs
        nan = torch.full(probs.shape[:-1], float("nan"), device=raw.device)
        return Conditional(nan, nan, d.sample().to(raw.dtype), probs)

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, levels={self.n_levels}"


class NegativeBinomialHead(LikelihoodHead):
    """Negative binomial counts: log-mean from the decoder, learned dispersion per feature.

    The log-mean is offset by the log of the training mean count, so the decoder
    learns deviations from it.
    """

    family = "negative_binomial"
    discrete = True

    def __init__(self, index: list[int]):
        super().__init__(index)
        n = len(index)
        self.register_buffer("log_offset", torch.zeros(n))
        self.raw_total_count = nn.Parameter(torch.full((n,), _inverse_softplus(10.0)))

    @property
    def total_count(self) -> torch.Tensor:
        return F.softplus(self.raw_total_count) + 1e-3

    def fit_statistics(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        mean, _ = masked_mean_sd(values, mask)
        self.log_offset.copy_(torch.log(mean.clamp_min(0) + 0.1))

    def _log_mean(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw + self.log_offset).clamp(max=30.0)

    def distribution(self, raw: torch.Tensor) -> dist.Distribution:
        r = self.total_count.expand_as(raw)
        return dist.NegativeBinomial(total_count=r, logits=self._log_mean(raw) - torch.log(r))

    def conditional(self, raw: torch.Tensor) -> Conditional:
        mu = torch.exp(self._log_mean(raw))
        return Conditional(mu, mu + mu**2 / self.total_count, self.distribution(raw).sample())


class PoissonHead(NegativeBinomialHead):
    """Poisson counts (no over-dispersion)."""

    family = "poisson"

    def distribution(self, raw: torch.Tensor) -> dist.Distribution:
        return dist.Poisson(torch.exp(self._log_mean(raw)))

    def conditional(self, raw: torch.Tensor) -> Conditional:
        mu = torch.exp(self._log_mean(raw))
        return Conditional(mu, mu, torch.poisson(mu))


HEADS: dict[str, type[LikelihoodHead]] = {
    h.family: h
    for h in (
        GaussianHead,
        StudentTHead,
        BernoulliHead,
        CategoricalHead,
        NegativeBinomialHead,
        PoissonHead,
    )
}


def masked_mean_sd(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and sd over observed entries (sd floored at 1e-6, 1 if constant)."""
    m = mask.to(values.dtype)
    n = m.sum(0).clamp_min(1)
    v = torch.where(mask, values, values.new_zeros(()))
    mean = v.sum(0) / n
    var = (torch.where(mask, values - mean, values.new_zeros(())) ** 2).sum(0) / (n - 1).clamp_min(
        1
    )
    sd = var.sqrt()
    sd = torch.where(sd > 1e-6, sd, torch.ones_like(sd))
    return mean, sd
