"""Encoding of per-individual covariates (site, batch, age, ...) for the decoders."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class CovariateEncoder:
    """Turns named covariates into a float matrix: one-hot levels or standardised numbers.

    Categorical covariates (strings) get one column per training level; an unseen
    level at prediction time gets all zeros (the decoders' reference) with a warning.
    Numeric covariates are standardised with the training mean and sd; a missing value
    is set to the training mean.

    Parameters
    ----------
    names
        Covariates in order.
    levels
        ``{name: levels}`` for categorical covariates.
    moments
        ``{name: (mean, sd)}`` for numeric covariates.
    """

    names: tuple[str, ...] = ()
    levels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    moments: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def fit(cls, table: pd.DataFrame, names: Sequence[str]) -> CovariateEncoder:
        """Learn levels and moments from a training covariate table."""
        missing = [n for n in names if n not in table.columns]
        if missing:
            raise KeyError(
                f"covariates {missing} are not in the cohort; it has {list(table.columns)}"
            )
        levels, moments = {}, {}
        for n in names:
            col = table[n]
            if pd.api.types.is_datetime64_any_dtype(col):
                raise TypeError(f"covariate {n!r} holds dates; convert it to a number first")
            if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
                v = col.to_numpy(dtype=float)
                v = v[np.isfinite(v)]
                if v.size == 0:
                    raise ValueError(f"covariate {n!r} has no observed value")
                sd = float(v.std()) if v.size > 1 and v.std() > 0 else 1.0
                moments[n] = (float(v.mean()), sd)
            else:
                lv = sorted({str(x) for x in col if pd.notna(x) and str(x) != ""})
                if not lv:
                    raise ValueError(f"covariate {n!r} has no observed value")
                levels[n] = tuple(lv)
        return cls(tuple(names), levels, moments)

    @property
    def width(self) -> int:
        """Number of columns of the encoded matrix."""
        return sum(len(self.levels[n]) if n in self.levels else 1 for n in self.names)

    def transform(self, table: pd.DataFrame) -> np.ndarray:
        """Encode a covariate table (rows: individuals) as ``(N, width)`` float32."""
        missing = [n for n in self.names if n not in table.columns]
        if missing:
            raise KeyError(
                f"the model uses covariates {list(self.names)}; the cohort lacks {missing}"
            )
        cols = []
        for n in self.names:
            col = table[n]
            if n in self.levels:
                as_str = np.array(["" if pd.isna(x) else str(x) for x in col], dtype=object)
                lv = self.levels[n]
                unseen = sorted(set(as_str) - set(lv) - {""})
                if unseen:
                    warnings.warn(
                        f"covariate {n!r}: levels {unseen[:5]} were not seen in training; "
                        "they are decoded at the reference (all-zero) encoding",
                        stacklevel=3,
                    )
                cols.append(np.stack([as_str == v for v in lv], axis=1).astype(np.float32))
            else:
                mean, sd = self.moments[n]
                v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
                v = np.where(np.isfinite(v), (v - mean) / sd, 0.0)
                cols.append(v[:, None].astype(np.float32))
        if not cols:
            return np.zeros((len(table), 0), dtype=np.float32)
        return np.concatenate(cols, axis=1)

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "levels": {k: list(v) for k, v in self.levels.items()},
            "moments": {k: list(v) for k, v in self.moments.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> CovariateEncoder:
        return cls(
            tuple(d.get("names", ())),
            {k: tuple(v) for k, v in d.get("levels", {}).items()},
            {k: (float(v[0]), float(v[1])) for k, v in d.get("moments", {}).items()},
        )
