"""Per-feature transforms and standardisation between data units and the emission scale.

A longitudinal feature enters the latent dynamic model as

.. math::

    v = g(x), \\qquad y = (v - \\mu) / \\sigma,

where ``x`` is the value in the cohort's units, ``g`` a fixed monotone transform and
``mu``, ``sigma`` the mean and sd of ``v`` over the training observations:

``"identity"``
    ``g(x) = x``.
``"log"``
    ``g(x) = log x`` for positive quantities.
``"log1p"``, ``"log+C"`` (e.g. ``"log+10"``)
    ``g(x) = log(x + C)`` (``C = 1`` for ``log1p``) for non-negative quantities that
    can reach zero, such as lesion diameters. A larger offset ``C`` (in the
    feature's units) makes the scale relative for large values and absolute near
    zero, which keeps a drop to zero (a complete response) from looking like an
    enormous log-ratio.

The emission model is Gaussian in ``y``; this module maps Gaussian moments of ``y``
back to the data scale:

* quantiles exactly, by transforming Gaussian quantiles (``g`` is monotone);
* means and sds exactly: identity as is, log transforms by the log-normal formulas
  ``E[e^v] = exp(m + s^2/2)`` and ``sd[e^v] = sqrt(expm1(s^2)) exp(m + s^2/2)``
  (minus the offset for the mean).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["TRANSFORMS", "FeatureTransform"]

#: Named per-feature transforms; ``"log+C"`` with a positive number ``C`` is accepted too.
TRANSFORMS = ("identity", "log", "log1p")


def transform_offset(spec: str) -> float | None:
    """``None`` for ``"identity"``, else the offset ``C`` of ``log(x + C)``.

    Raises ``ValueError`` for an unknown spec.
    """
    if spec == "identity":
        return None
    if spec == "log":
        return 0.0
    if spec == "log1p":
        return 1.0
    if spec.startswith("log+"):
        try:
            c = float(spec[4:])
        except ValueError:
            c = float("nan")
        if c > 0 and np.isfinite(c):
            return c
    raise ValueError(
        f"unknown transform {spec!r}; use one of {TRANSFORMS} or 'log+C' with a positive C"
    )


@dataclass
class FeatureTransform:
    """Transforms and standardisation of the modelled features (fixed order).

    Attributes
    ----------
    names : list of str
        Feature names (keys of :attr:`transforms`), in model order.
    transforms : list of str
        One of :data:`TRANSFORMS` or ``"log+C"`` per feature.
    mean, sd : numpy.ndarray
        ``(F,)`` standardisation of the transformed values.
    """

    names: list[str]
    transforms: list[str]
    mean: np.ndarray
    sd: np.ndarray

    def __post_init__(self) -> None:
        self.offsets = [transform_offset(t) for t in self.transforms]
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.sd = np.asarray(self.sd, dtype=np.float64)
        if (self.sd <= 0).any() or not np.isfinite(self.sd).all():
            raise ValueError("standardisation sds must be positive and finite")

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(
        cls,
        names: Sequence[str],
        values: np.ndarray,
        mask: np.ndarray,
        transforms: Mapping[str, str] | None = None,
        standardize: bool = True,
    ) -> FeatureTransform:
        """Standardisation from observed values ``(..., F)`` (``mask`` True where observed).

        Features without two distinct observed values get sd 1 (and mean 0 when
        unobserved).
        """
        transforms = dict(transforms or {})
        unknown = sorted(set(transforms) - set(names))
        if unknown:
            raise KeyError(f"transforms given for features the model does not use: {unknown}")
        kinds = [transforms.get(n, "identity") for n in names]
        F = len(names)
        mean, sd = np.zeros(F), np.ones(F)
        if standardize:
            flat_v = values.reshape(-1, F)
            flat_m = mask.reshape(-1, F)
            for f in range(F):
                v = flat_v[flat_m[:, f], f]
                if v.size:
                    v = _forward(v, transform_offset(kinds[f]), names[f])
                    mean[f] = v.mean()
                    if v.size > 1 and v.std() > 0:
                        sd[f] = v.std()
        return cls(list(names), kinds, mean, sd)

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "transforms": list(self.transforms),
            "mean": self.mean.tolist(),
            "sd": self.sd.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> FeatureTransform:
        return cls(list(d["names"]), list(d["transforms"]), np.array(d["mean"]), np.array(d["sd"]))

    # ------------------------------------------------------------------ mapping
    def encode(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Data units ``(..., F)`` to the standardised emission scale (NaN stays NaN).

        Entries outside ``mask`` are ignored (returned as NaN); values outside a
        transform's domain raise ``ValueError``.
        """
        values = np.asarray(values, dtype=np.float64)
        if mask is not None:
            values = np.where(mask, values, np.nan)
        out = np.empty_like(values)
        for f, offset in enumerate(self.offsets):
            out[..., f] = _forward(values[..., f], offset, self.names[f])
        return (out - self.mean) / self.sd

    def decode(self, y: np.ndarray) -> np.ndarray:
        """Standardised values ``(..., F)`` (e.g. draws) back to data units."""
        v = np.asarray(y, dtype=np.float64) * self.sd + self.mean
        out = np.empty_like(v)
        for f, offset in enumerate(self.offsets):
            out[..., f] = _inverse(v[..., f], offset)
        return out

    def moments(
        self, mean: np.ndarray, var: np.ndarray, quantiles: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Data-scale mean, sd and quantiles of ``y ~ N(mean, var)`` per feature ``(..., F)``."""
        m = np.asarray(mean, dtype=np.float64) * self.sd + self.mean
        s = np.sqrt(np.clip(var, 0.0, None)) * self.sd
        out_mean, out_sd = np.empty_like(m), np.empty_like(s)
        for f, offset in enumerate(self.offsets):
            mf, sf = m[..., f], s[..., f]
            if offset is None:
                out_mean[..., f], out_sd[..., f] = mf, sf
            else:
                centre = np.exp(mf + 0.5 * sf**2)
                out_mean[..., f] = centre - offset
                out_sd[..., f] = np.sqrt(np.expm1(sf**2)) * centre
        qs = [
            self.decode(mean + stats.norm.ppf(q) * np.sqrt(np.clip(var, 0, None)))
            for q in quantiles
        ]
        return out_mean, out_sd, qs

    def __repr__(self) -> str:
        parts = [f"{n}: {t}" for n, t in zip(self.names, self.transforms, strict=True)]
        return f"FeatureTransform({', '.join(parts)})"


def _forward(v: np.ndarray, offset: float | None, name: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if offset is None:
        return v.copy()
    ok = np.isnan(v) | (v + offset > 0 if offset == 0 else v >= 0)
    if not ok.all():
        bound = "positive" if offset == 0 else "non-negative"
        bad = v[~ok][:3].tolist()
        raise ValueError(f"feature {name!r}: a log transform needs {bound} values, got {bad}")
    return np.log(v + offset)


def _inverse(v: np.ndarray, offset: float | None) -> np.ndarray:
    if offset is None:
        return v
    return np.exp(v) - offset
