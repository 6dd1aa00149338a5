"""A property over age from its values at a few canonical ages: interpolation in log-age.

Strength gain of concrete is close to linear in log-age over weeks to months (the
classical strength-gain laws, e.g. CEB-FIP ``fc(t) = fc28 exp(s (1 - sqrt(28 / t)))``,
are smooth and monotone in ``log t``), so between two test ages a straight line in
log-age is a faithful, assumption-light interpolant.  Applied to each joint predictive
draw, it keeps every draw a curve through its values at the canonical ages, and a
measured age (observed in every draw) is passed through exactly.

Why not a strength-gain-law decoder: a parametric law (two or three parameters per
mix) would smooth across ages, but the static twin already learns the joint
distribution of strengths at all test ages from data, including mixes whose gain
deviates from any one law (slag and fly-ash mixes gain late); interpolation adds no
assumption between test ages, and the law is kept as a baseline in
``benchmarks/materials.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["interpolate_log_age"]


def interpolate_log_age(
    known_ages: np.ndarray, values: np.ndarray, ages: np.ndarray, floor: float | None = 0.0
) -> np.ndarray:
    """Piecewise-linear interpolation in ``log(age)`` along the last axis, vectorised.

    Parameters
    ----------
    known_ages
        ``(K,)`` strictly increasing positive ages of ``values``' last axis (K >= 2).
    values
        ``(..., K)`` values at ``known_ages`` (e.g. draws × candidates × ages); must be
        finite.
    ages
        ``(A,)`` positive ages to evaluate.
    floor
        Lower bound of the result (0 for a strength); ``None`` for none.

    Returns
    -------
    numpy.ndarray
        ``(..., A)``.  Outside ``[known_ages[0], known_ages[-1]]`` the line through the
        two nearest known ages is extended.

    Examples
    --------
    >>> interpolate_log_age(np.array([7.0, 28.0]), np.array([20.0, 30.0]), np.array([14.0]))
    array([25.])
    """
    known = np.log(np.asarray(known_ages, dtype=float))
    if known.ndim != 1 or known.size < 2 or (np.diff(known) <= 0).any():
        raise ValueError("known_ages must be at least two strictly increasing positive ages")
    x = np.log(np.asarray(ages, dtype=float))
    v = np.asarray(values, dtype=float)
    if v.shape[-1] != known.size:
        raise ValueError(f"values' last axis has {v.shape[-1]} entries for {known.size} ages")
    seg = np.clip(np.searchsorted(known, x, side="right") - 1, 0, known.size - 2)
    x0, x1 = known[seg], known[seg + 1]
    w = (x - x0) / (x1 - x0)
    out = v[..., seg] * (1.0 - w) + v[..., seg + 1] * w
    if floor is not None:
        out = np.maximum(out, floor)
    return out
