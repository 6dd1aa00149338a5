"""Encode covariates into the context vector of the initial-state prior.

Numeric covariates are standardised with the training mean and sd (missing values
become the mean, i.e. 0); text covariates are one-hot encoded over the levels seen
in training (an unseen or missing level is all zeros). The encoding is stored with
a saved model as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["ContextEncoding"]


@dataclass
class ContextEncoding:
    """Column layout of the covariate context.

    Attributes
    ----------
    numeric : dict of str to (float, float)
        ``{name: (mean, sd)}``.
    categorical : dict of str to list of str
        ``{name: levels}``.
    """

    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)
    categorical: dict[str, list[str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Covariates used, in encoding order."""
        return [*self.numeric, *self.categorical]

    @property
    def columns(self) -> list[str]:
        """Names of the encoded columns."""
        cols = list(self.numeric)
        for name, levels in self.categorical.items():
            cols += [f"{name}={lv}" for lv in levels]
        return cols

    @property
    def width(self) -> int:
        return len(self.columns)

    @classmethod
    def fit(cls, table: pd.DataFrame, names: Sequence[str]) -> ContextEncoding:
        """Learn the encoding of ``names`` from a covariate table (training individuals)."""
        missing = [n for n in names if n not in table.columns]
        if missing:
            raise KeyError(
                f"covariates {missing} are not in the cohort; it has {list(table.columns)}"
            )
        numeric, categorical = {}, {}
        for n in names:
            col = table[n]
            if pd.api.types.is_datetime64_any_dtype(col):
                raise TypeError(
                    f"covariate {n!r} is a date; give a numeric covariate (e.g. age) instead"
                )
            if pd.api.types.is_numeric_dtype(col):
                v = col.to_numpy(dtype=np.float64)
                v = v[np.isfinite(v)]
                mean = float(v.mean()) if v.size else 0.0
                sd = float(v.std()) if v.size > 1 and v.std() > 0 else 1.0
                numeric[n] = (mean, sd)
            else:
                levels = sorted({str(x) for x in col if isinstance(x, str) and x != ""})
                categorical[n] = levels
        return cls(numeric, categorical)

    def transform(self, table: pd.DataFrame) -> np.ndarray:
        """Encoded context ``(N, width)`` of a covariate table."""
        N = len(table)
        cols = []
        for n, (mean, sd) in self.numeric.items():
            if n not in table.columns:
                raise KeyError(f"the model needs covariate {n!r}, which the cohort lacks")
            v = pd.to_numeric(table[n], errors="coerce").to_numpy(dtype=np.float64)
            cols.append(np.where(np.isfinite(v), (v - mean) / sd, 0.0))
        for n, levels in self.categorical.items():
            if n not in table.columns:
                raise KeyError(f"the model needs covariate {n!r}, which the cohort lacks")
            v = table[n].astype(str).to_numpy()
            cols += [(v == lv).astype(np.float64) for lv in levels]
        return np.stack(cols, axis=1) if cols else np.zeros((N, 0))

    def to_dict(self) -> dict:
        return {
            "numeric": {k: list(v) for k, v in self.numeric.items()},
            "categorical": {k: list(v) for k, v in self.categorical.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> ContextEncoding:
        return cls(
            {k: (float(v[0]), float(v[1])) for k, v in d.get("numeric", {}).items()},
            {k: list(v) for k, v in d.get("categorical", {}).items()},
        )
