"""A regression mean under a property twin: the latent model carries each batch's deviation.

:class:`PropertyMean` fits any regressor with the scikit-learn interface (``fit(X, y)``,
``predict(X)``; gradient-boosted trees, a random forest, ...) to the properties given
the inputs, and gives the *cross-fitted* residual of every training batch: its
prediction comes from estimators that never saw it, so the residuals have the spread
and the correlations of the errors on new batches.  :class:`PropertyTwinModel` with a
``mean_model`` then trains its latent model on these residuals:

    property = mean(inputs) + deviation(z),    z ~ posterior given the measured properties,

the mixed-effects design of Gaussian-process boosting (Sigrist 2022) with the latent
population model as the random effect.  From the inputs alone a prediction is the
mean plus the population spread of the deviations (calibrated intervals); a measured
property moves ``z`` and with it every other property's deviation.

Properties named by an age (``fc_3d`` ... ``fc_365d``) share one estimator on rows
``(inputs, log age)``, so strength at a rarely tested age borrows from all the others;
every other property gets its own estimator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PropertyMean"]


class PropertyMean:
    """Cross-fitted regression mean of the properties given the inputs.

    Parameters
    ----------
    make_estimator
        Called with no arguments, returns a fresh unfitted regressor with ``fit(X, y)``
        and ``predict(X)`` (e.g. ``lambda: HistGradientBoostingRegressor()``).
    properties
        Property labels, in the order of the columns of the tables given to :meth:`fit`.
    ages
        ``{property: age}`` for the properties named by an age (pooled estimator).
    folds
        Cross-fitting folds over batches (at least 2).
    seed
        Seed of the fold assignment.
    """

    def __init__(
        self,
        make_estimator: Callable[[], Any],
        properties: Sequence[str],
        ages: Mapping[str, float] | None = None,
        *,
        folds: int = 5,
        seed: int = 0,
    ):
        if not callable(make_estimator):
            raise TypeError("make_estimator must be callable: it returns a fresh regressor")
        if int(folds) < 2:
            raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
        self.make_estimator = make_estimator
        self.properties = [str(p) for p in properties]
        self.ages = {str(k): float(v) for k, v in (ages or {}).items() if k in self.properties}
        self.folds = int(folds)
        self.seed = int(seed)
        self.estimators: dict[str, Any] = {}

    @property
    def groups(self) -> list[tuple[str, list[str]]]:
        """``(estimator key, properties)``: ``"age"`` for the pooled age properties."""
        aged = [p for p in self.properties if p in self.ages]
        out = [("age", aged)] if aged else []
        return out + [(p, [p]) for p in self.properties if p not in self.ages]

    def _rows(self, x: np.ndarray, props: Sequence[str]) -> np.ndarray:
        """Design rows for ``props``: the inputs, plus log age for the pooled estimator
        (individual-major: row ``i * len(props) + j`` is individual ``i``, property ``j``)."""
        if props[0] in self.ages:
            log_age = np.log([self.ages[p] for p in props])
            return np.hstack([np.repeat(x, len(props), 0), np.tile(log_age, len(x))[:, None]])
        return x

    def _fit_group(self, x: np.ndarray, y: np.ndarray, props: Sequence[str]) -> Any | None:
        rows, target = self._rows(x, props), y.reshape(-1)
        ok = np.isfinite(target)
        if not ok.any():
            return None
        return self.make_estimator().fit(rows[ok], target[ok])

    def _predict_group(self, est: Any | None, x: np.ndarray, props: Sequence[str]) -> np.ndarray:
        if est is None:
            return np.full((len(x), len(props)), np.nan)
        pred = np.asarray(est.predict(self._rows(x, props)), dtype=float)
        return pred.reshape(len(x), len(props))

    def fit(
        self, x: pd.DataFrame, y: pd.DataFrame, groups: Sequence[Any] | None = None
    ) -> pd.DataFrame:
        """Fit on every batch and return the cross-fitted residuals ``y - mean``.

        Parameters
        ----------
        x
            Inputs, one row per batch (no missing values).
        y
            Measured properties, columns :attr:`properties` (NaN: not measured).
        groups
            A label per batch; batches sharing one are kept in the same cross-fitting
            fold (e.g. samples of one heat of steel, which would otherwise be predicted
            from their siblings and give residuals too small).

        Returns
        -------
        pandas.DataFrame
            Residuals of the measured entries (NaN elsewhere), like ``y``.
        """
        xv = self._check_x(x)
        yv = y[self.properties].to_numpy(dtype=float)
        n = len(xv)
        labels = np.arange(n) if groups is None else pd.factorize(np.asarray(groups))[0]
        if len(labels) != n:
            raise ValueError(f"groups has {len(labels)} labels for {n} batches")
        if (labels < 0).any():
            raise ValueError("groups has missing labels; give every batch a group")
        n_groups = int(labels.max()) + 1 if n else 0
        if n_groups < self.folds:
            raise ValueError(
                f"{n_groups} batches (groups) are too few for {self.folds} cross-fitting folds"
            )
        fold = (np.random.default_rng(self.seed).permutation(n_groups) % self.folds)[labels]
        oof = np.full(yv.shape, np.nan)
        estimators: dict[str, Any] = {}
        for key, props in self.groups:
            cols = [self.properties.index(p) for p in props]
            for k in range(self.folds):  # a handful of fits, not a hot path
                est = self._fit_group(xv[fold != k], yv[fold != k][:, cols], props)
                oof[np.ix_(fold == k, cols)] = self._predict_group(est, xv[fold == k], props)
            estimators[key] = self._fit_group(xv, yv[:, cols], props)
            if estimators[key] is None:
                raise ValueError(f"no measured values of {props} to fit the mean model on")
        self.estimators = estimators  # only a complete fit replaces the previous one
        return pd.DataFrame(yv - oof, index=y.index, columns=self.properties)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """Mean of every property for each row of ``x``: ``(n, n_properties)``."""
        if not self.estimators:
            raise RuntimeError("the mean model is not fitted")
        xv = self._check_x(x)
        out = np.empty((len(xv), len(self.properties)))
        for key, props in self.groups:
            cols = [self.properties.index(p) for p in props]
            out[:, cols] = self._predict_group(self.estimators[key], xv, props)
        return out

    @staticmethod
    def _check_x(x: pd.DataFrame) -> np.ndarray:
        xv = x.to_numpy(dtype=float)
        if not np.isfinite(xv).all():
            bad = x.columns[~np.isfinite(xv).all(axis=0)].tolist()
            raise ValueError(f"the mean model needs every input; missing values in {bad}")
        return xv

    @property
    def estimator_name(self) -> str:
        """Class name of the fitted estimators (``"unfitted"`` before :meth:`fit`)."""
        first = next(iter(self.estimators.values()), None)
        return "unfitted" if first is None else type(first).__name__

    def __repr__(self) -> str:
        return (
            f"<PropertyMean: {len(self.properties)} properties ({len(self.ages)} by age), "
            f"{self.estimator_name}, {self.folds}-fold cross-fitted>"
        )
