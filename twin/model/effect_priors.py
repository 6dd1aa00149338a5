"""Mechanistic priors on how an intervention agent acts, and the learned agent effects.

In the linear latent model an agent ``a`` enters the drift as ``B[:, a] u_a(t)``. The
*effect* of the agent on feature ``f`` after ``tau`` days of a constant unit exposure
(starting from any state) is the change of the feature's mean on its transformed
scale (data units for untransformed features, log-ratio for ``log``/``log1p``)::

    effect(a, f, tau) = sd_f * [H Gamma(tau) B]_{f a},    Gamma(tau) = int_0^tau expm(A s) ds,

and ``tau = inf`` (steady state) gives ``Gamma = -A^{-1}``. This is what a user knows
from pharmacology or earlier trials ("lowers systolic BP by about 10 mmHg after three
months"), so a prior is stated on it::

    prior_effects = {"lisinopril": {"feature": "8480-6", "mean": -10, "sd": 3, "at": 90}}

Each entry adds ``log N(effect; mean, sd^2)`` to the training objective, so the
fit is a MAP estimate that combines the prior with what the data teach (a tight
``sd`` pins the effect; a wide one lets the data move it). Several entries per agent
(a list) give a time course, e.g. no effect at day 7 and the full effect at day 90
describes the onset. An onset *delay* (dead time) is part of the agent's exposure
(``agent_exposure={"drug": {"delay": 14}}`` in the model), not of the prior.
For neural dynamics the effect is that of the linear part of the drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["EffectPrior", "agent_effects", "effect_log_prior", "parse_effect_priors"]


@dataclass(frozen=True)
class EffectPrior:
    """Gaussian prior on one agent's effect on one feature.

    Attributes
    ----------
    agent, feature : str
        Agent (exposure column) and modelled feature name.
    mean, sd : float
        Prior mean and sd of the effect (transformed units of the feature).
    at : float or None
        Days after the start of a constant unit exposure; None: steady state.
    """

    agent: str
    feature: str
    mean: float
    sd: float
    at: float | None = None

    def to_dict(self) -> dict:
        return {
            "agent": self.agent,
            "feature": self.feature,
            "mean": self.mean,
            "sd": self.sd,
            "at": self.at,
        }


_KEYS = ("feature", "mean", "sd", "at")


def parse_effect_priors(
    spec: Mapping[str, Mapping | Sequence[Mapping]] | None,
    agents: Sequence[str],
    features: Sequence[str],
) -> list[EffectPrior]:
    """Validate ``{agent: {feature, mean, sd, at} | [..]}`` into :class:`EffectPrior` s."""
    out: list[EffectPrior] = []
    for agent, entries in (spec or {}).items():
        if agent not in agents:
            raise KeyError(
                f"prior_effects: agent {agent!r} is not among the model's agents {list(agents)}"
            )
        items = [entries] if isinstance(entries, Mapping) else list(entries)
        for d in items:
            unknown = set(d) - set(_KEYS)
            if unknown:
                raise KeyError(
                    f"prior_effects[{agent!r}]: unknown keys {sorted(unknown)}; allowed {_KEYS}"
                )
            if "feature" not in d or "mean" not in d or "sd" not in d:
                raise KeyError(f"prior_effects[{agent!r}]: 'feature', 'mean' and 'sd' are required")
            if d["feature"] not in features:
                raise KeyError(
                    f"prior_effects[{agent!r}]: feature {d['feature']!r} is not modelled; "
                    f"features: {list(features)}"
                )
            sd = float(d["sd"])
            at = d.get("at")
            if not sd > 0 or not math.isfinite(sd):
                raise ValueError(f"prior_effects[{agent!r}]: sd must be positive, got {d['sd']!r}")
            if at is not None and not float(at) > 0:
                raise ValueError(f"prior_effects[{agent!r}]: 'at' must be > 0 days, got {at!r}")
            out.append(
                EffectPrior(
                    agent,
                    str(d["feature"]),
                    float(d["mean"]),
                    sd,
                    None if at is None else float(at),
                )
            )
    return out


def _linear(dynamics: torch.nn.Module) -> torch.nn.Module:
    return getattr(dynamics, "linear", dynamics)


def agent_effects(
    dynamics: torch.nn.Module,
    H: Tensor,
    feature_sd: Tensor,
    horizon: float | None,
    time_unit: float = 1.0,
) -> Tensor:
    """Effects ``(F, P)`` of a constant unit exposure of each agent after ``horizon`` days.

    ``horizon=None``: steady state. ``time_unit``: days per unit of the dynamics'
    time. Differentiable in the parameters.
    """
    lin = _linear(dynamics)
    A, B = lin.A, lin.B
    if horizon is None:
        response = torch.linalg.solve(-A, B)
    else:
        tau = torch.tensor(float(horizon) / time_unit, dtype=A.dtype, device=A.device)
        gamma = lin.discretize(tau).Gamma
        response = gamma @ B
    return feature_sd[:, None].to(A.dtype) * (H.to(A.dtype) @ response)


def effect_log_prior(
    priors: Sequence[EffectPrior],
    dynamics: torch.nn.Module,
    H: Tensor,
    feature_sd: Tensor,
    agents: Sequence[str],
    features: Sequence[str],
    time_unit: float = 1.0,
) -> Tensor:
    """Sum of the Gaussian log prior densities of the constrained effects."""
    lin = _linear(dynamics)
    total = lin.A.new_zeros(())
    cache: dict[float | None, Tensor] = {}
    for p in priors:
        if p.at not in cache:
            cache[p.at] = agent_effects(dynamics, H, feature_sd, p.at, time_unit)
        eff = cache[p.at][list(features).index(p.feature), list(agents).index(p.agent)]
        z = (eff - p.mean) / p.sd
        total = total - 0.5 * z**2 - math.log(p.sd) - 0.5 * math.log(2 * math.pi)
    return total
