"""Split-conformal scaling of predictive intervals.

Given held-out values and a model's predictive for them, each value's *score* is the
factor by which its central interval would have to be stretched about the centre to
just cover it (``|x - centre| / half-width``).  The ``level`` quantile of the scores
is the factor that makes the stretched ``level`` intervals cover that share of the
held-out values (split conformal prediction with normalised scores; Lei et al. 2018,
Papadopoulos et al. 2002).  The guarantee of split conformal prediction assumes
exchangeable scores; scores of several features of one individual are correlated, so
read it as a calibration, not a finite-sample guarantee.  Only the widths change: the
predictive means stay as they are.
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
    NaN and ``inf`` where the interval reaches no further than the centre on that side
    (zero width, or a centre outside the interval) and ``x`` is off the centre.
    """
    values, centre = np.asarray(values, float), np.asarray(centre, float)
    above = values >= centre
    half = np.where(above, np.asarray(upper, float) - centre, centre - np.asarray(lower, float))
    dev = np.abs(values - centre)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(half > 0, dev / half, np.inf)
    scores = np.where(dev == 0, 0.0, scores)
    return np.where(np.isnan(values + centre + half), np.nan, scores)


def interval_scale_factor(scores: np.ndarray, level: float, conformal: bool = True) -> float:
    """The factor that stretches the intervals to cover ``level`` of the scored values.

    With ``conformal`` the ``ceil((n + 1) level)``-th smallest of the ``n`` scores (the
    split-conformal quantile, which covers at least ``level`` of the scored values);
    otherwise the interpolated empirical ``level`` quantile.  NaN scores are ignored;
    with fewer than :data:`MIN_SCORES` left, or when the quantile is not finite (the
    intervals are degenerate for too many values), the factor is 1.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s = np.asarray(scores, float)
    s = s[~np.isnan(s)]
    if s.size < MIN_SCORES:
        return 1.0
    if conformal:
        k = min(int(np.ceil((s.size + 1) * level)), s.size)
        factor = float(np.partition(s, k - 1)[k - 1])
    else:
        factor = float(np.quantile(s, level))
    return factor if np.isfinite(factor) else 1.0
