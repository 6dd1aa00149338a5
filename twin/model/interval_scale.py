"""Split-conformal scaling of predictive intervals.

Given held-out values and a model's predictive for them, each value's *score* is the
factor by which its central interval would have to be stretched about the centre to
just cover it (``|x - centre| / half-width``).  The ``level`` quantile of the scores
is the factor that makes the stretched ``level`` intervals cover that share of the
held-out values (split conformal prediction with normalised scores; Lei et al. 2018,
Papadopoulos et al. 2002).  Only the widths change: the predictive means stay as
they are.
"""

from __future__ import annotations

import numpy as np

#: Held-out scores needed before a factor is estimated; fewer give factor 1.
MIN_SCORES = 10


def interval_scores(
    values: np.ndarray, centre: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """``|x - centre|`` over the interval's half-width on the side of ``x``.

    A score of 1 puts ``x`` on the interval's edge; scores are NaN where any input is
    NaN and ``inf`` where the interval has zero width on that side and ``x`` is off the
    centre.
    """
    values, centre = np.asarray(values, float), np.asarray(centre, float)
    above = values >= centre
    half = np.where(above, np.asarray(upper, float) - centre, centre - np.asarray(lower, float))
    dev = np.abs(values - centre)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dev == 0, 0.0, dev / half)


def interval_scale_factor(scores: np.ndarray, level: float) -> float:
    """The empirical ``level`` quantile of the scores (NaN ignored; 1 when fewer than
    :data:`MIN_SCORES` remain)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s = np.asarray(scores, float)
    s = s[~np.isnan(s)]
    if s.size < MIN_SCORES:
        return 1.0
    return float(np.quantile(s, level))
