"""Calibration of the product of experts on held-out individuals.

Experts fitted on a few hundred individuals tend to be over-confident about the latent
directions they share with other modalities: the posterior from some modalities then
predicts the others more precisely than it should, and imputation intervals are too
narrow.  The posterior is therefore tempered per modality,

    q_tau(z | x_S)  ∝  p(z) * prod_{m in S} expert_m(z) ** tau_m,

i.e. the precision of modality ``m``'s expert is multiplied by ``tau_m`` (a power
posterior whose likelihood of ``x_m`` is raised to ``tau_m``).  The temperatures are
chosen on the validation individuals, by coordinate ascent over a grid in (0, 1], to
maximise the predictive log-likelihood of each modality when it is hidden and predicted
from the others (a leave-one-modality-out score), so they drop below 1 only when
held-out data say the experts are over-confident.  Tempering the likelihood of a
misspecified model this way is the "generalised" or "safe" Bayesian posterior
(Grünwald & van Ommen 2017); the refined posterior and the NUTS check target the same
tempered posterior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from twin.model.data import ObservedData
from twin.model.module import TwinModule
from twin.nn.layers import weight_sampling

#: Temperatures tried: none (1) to strong tempering.  Values above 1 would sharpen the
#: posterior beyond Bayes (a power likelihood that counts the data more than once), so
#: they are not offered.
DEFAULT_GRID = (1.0, 0.8, 0.6, 0.45, 0.33, 0.25, 0.18, 0.12, 0.08)


@torch.no_grad()
def leave_one_out_log_likelihood(
    module: TwinModule, data: ObservedData, n_draws: int = 64
) -> float:
    """Mean over entries of ``log p(x_m | x_rest)`` with each modality hidden in turn.

    The predictive density of each hidden entry is estimated by Monte Carlo over the
    posterior draws (``log mean_s p(x | z_s)``, entry by entry).
    """
    module.eval()
    total, count = 0.0, 0
    for name, block in module.items():
        hidden = data.masks[name]
        if not hidden.any():
            continue
        keep, part = data.leave_out(name)
        if not keep.any():
            continue
        values, mask = data.values[name][keep], hidden[keep]
        loc, scale = module.posterior(part)
        z = loc + scale * torch.randn((n_draws, *loc.shape), device=loc.device)
        with weight_sampling(module, True):
            raw = module.decode(z, part.covariates)[name]
        for head, r in block.split(raw):
            v, k = values[:, head.index], mask[:, head.index]
            target = torch.where(k, head.target(v), head.placeholder(v))
            lp = head.distribution(r).log_prob(target)  # (S, n, F_g)
            lp = torch.logsumexp(lp, dim=0) - math.log(n_draws)
            if head.family in ("gaussian", "student_t"):  # back to the data scale
                lp = lp - torch.log(head.scale)
            total += float(torch.where(k, lp, lp.new_zeros(())).sum())
            count += int(k.sum())
    return total / max(count, 1)


def calibrate_temperatures(
    module: TwinModule,
    data: ObservedData,
    grid: Sequence[float] = DEFAULT_GRID,
    sweeps: int = 2,
    n_draws: int = 64,
) -> tuple[dict[str, float], float]:
    """Per-modality expert temperatures maximising the leave-one-modality-out score.

    Coordinate ascent: each modality's temperature in turn is set to the grid value
    with the best score on ``data`` given the others, ``sweeps`` times over.  Every
    evaluation uses the same random draws (common random numbers), so the comparison
    is not blurred by Monte Carlo noise.  Sets ``module.expert_temperature`` and
    returns ``({modality: temperature}, best score)``; with fewer than two modalities
    or no data the temperatures stay 1.
    """
    temps = module.expert_temperature
    temps.fill_(1.0)
    if len(module.names) < 2 or len(data) == 0:
        return dict(zip(module.names, temps.tolist(), strict=True)), float("nan")
    state = torch.random.get_rng_state()

    def score() -> float:
        torch.random.set_rng_state(state)
        return leave_one_out_log_likelihood(module, data, n_draws)

    best = score()
    for _ in range(sweeps):
        changed = False
        for k in range(len(module.names)):
            keep = float(temps[k])
            for tau in grid:
                if tau == keep:
                    continue
                temps[k] = tau
                value = score()
                if value > best + 1e-9:
                    best, keep, changed = value, float(tau), True
            temps[k] = keep
        if not changed:
            break
    torch.random.set_rng_state(state)
    return dict(zip(module.names, temps.tolist(), strict=True)), best
