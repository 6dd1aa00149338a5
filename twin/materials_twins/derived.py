"""Derived input features and how a setting of one changes the inputs it comes from.

Some inputs of a materials twin are functions of others: a concrete's binder is
cement + slag + fly ash, its water/cement ratio is water / cement.  When candidate
settings are generated (a sweep, an inverse design), the derived features must be
recomputed from the components, never set independently, and a setting of a derived
feature ("water/cement 0.45") must say which component it changes.

A :class:`DerivedFeature` holds the formula (plain arithmetic: it runs on numpy
arrays, pandas columns and torch tensors alike) and, optionally, the component it
*adjusts* when it is set, with the inverse formula.  :class:`DerivedFeatures` applies
a list of them in order (later ones may use earlier ones) and resolves settings.

Concrete (:data:`CONCRETE_DERIVED`)
-----------------------------------
=====================  =========================================  ====================
feature                formula                                    a setting changes
=====================  =========================================  ====================
``binder``             cement + blast_furnace_slag + fly_ash      (not settable: set
                                                                  the components)
``water_cement_ratio``  water / cement                            ``water`` = r × cement
``water_binder_ratio``  water / binder                            ``water`` = r × binder
=====================  =========================================  ====================

So a water/cement setting keeps the cement content and changes the water, the usual
reading of a w/c sweep at fixed cement content; to keep the water and change the
cement, set ``cement`` directly.  A ratio is missing (NaN) where its denominator is
not positive, as in :func:`twin.materials.read_concrete`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CONCRETE_DERIVED", "DerivedFeature", "DerivedFeatures", "SettingError"]


class SettingError(ValueError):
    """A setting names an unknown input, conflicts with another or cannot be applied."""


@dataclass(frozen=True)
class DerivedFeature:
    """A feature computed from other input features.

    Parameters
    ----------
    name
        Feature name.
    inputs
        Names of the features the formula reads, in argument order.
    formula
        ``formula(*columns)``: plain arithmetic that works on numpy, pandas and torch.
    adjusts
        The input changed when this feature is *set* (e.g. ``"water"`` for a
        water/cement ratio); ``None``: the feature cannot be set.
    solve
        ``solve(value, *columns)`` → the new value of ``adjusts`` (its own current
        column among ``columns`` is ignored by well-formed inverses).
    """

    name: str
    inputs: tuple[str, ...]
    formula: Callable[..., Any]
    adjusts: str | None = None
    solve: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if (self.adjusts is None) != (self.solve is None):
            raise ValueError(
                f"derived feature {self.name!r}: give both adjusts and solve, or neither"
            )
        if self.adjusts is not None and self.adjusts not in self.inputs:
            raise ValueError(
                f"derived feature {self.name!r} adjusts {self.adjusts!r}, which is not one of its "
                f"inputs {list(self.inputs)}"
            )


def _positive(x: Any) -> Any:
    """``x`` where positive, NaN elsewhere (numpy, pandas or torch)."""
    if hasattr(x, "masked_fill"):  # torch
        return x.masked_fill(~(x > 0), float("nan"))
    return np.where(np.asarray(x) > 0, x, np.nan)


class DerivedFeatures:
    """An ordered list of derived features over one input table.

    Parameters
    ----------
    features
        The derived features; each may read base features and derived features listed
        before it.
    """

    def __init__(self, features: Iterable[DerivedFeature] = ()):
        self.features: tuple[DerivedFeature, ...] = tuple(features)
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"derived features listed twice: {names}")
        for i, f in enumerate(self.features):
            later = [x for x in f.inputs if x in names[i:]]
            if later:
                raise ValueError(
                    f"derived feature {f.name!r} reads {later}, which are derived at or after it"
                )

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> DerivedFeature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.features)

    def base_inputs(self, feature_names: Sequence[str]) -> list[str]:
        """The features of ``feature_names`` that are not derived (the free components)."""
        return [n for n in feature_names if n not in self.names]

    # ------------------------------------------------------------------ computing
    def compute(self, columns: Mapping[str, Any]) -> dict[str, Any]:
        """All columns with every derived feature (re)computed, in order.

        ``columns`` maps names to numpy arrays, pandas Series or torch tensors; derived
        features whose inputs are absent are left as given (or absent).
        """
        out = dict(columns)
        for f in self.features:
            if all(x in out for x in f.inputs):
                out[f.name] = f.formula(*(out[x] for x in f.inputs))
        return out

    def apply_to_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``frame`` with the derived features recomputed from their inputs.

        Where an input is missing (NaN) a derived value given in ``frame`` is kept.
        """
        cols = {c: frame[c].to_numpy(dtype=float) for c in frame.columns}
        done = self.compute(cols)
        out = frame.copy()
        for f in self.features:
            if f.name not in done:
                continue
            value = np.asarray(done[f.name], dtype=float)
            if f.name in cols:  # keep a given value where the components are missing
                value = np.where(np.isnan(value), cols[f.name], value)
            out[f.name] = value
        return out

    # ------------------------------------------------------------------ settings
    def check_settings(self, settings: Iterable[str], known: Sequence[str]) -> None:
        """Refuse unknown names, unsettable derived features and conflicting settings.

        Parameters
        ----------
        settings
            Names of the features to set.
        known
            All input feature names of the model (base and derived).

        Raises
        ------
        SettingError
            Naming the setting and what is wrong.
        """
        names = list(settings)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SettingError(
                f"unknown setting(s) {unknown}; the model's inputs are {list(known)}"
            )
        adjusted: dict[str, str] = {}
        for n in names:
            if n not in self.names:
                continue
            f = self[n]
            if f.adjusts is None:
                raise SettingError(
                    f"{n!r} is derived from {list(f.inputs)} and cannot be set on its own; set "
                    "those instead"
                )
            if f.adjusts in names:
                raise SettingError(
                    f"settings {n!r} and {f.adjusts!r} conflict: setting {n!r} changes "
                    f"{f.adjusts!r}"
                )
            if f.adjusts in adjusted:
                raise SettingError(
                    f"settings {adjusted[f.adjusts]!r} and {n!r} conflict: both change "
                    f"{f.adjusts!r}"
                )
            adjusted[f.adjusts] = n

    def apply_settings(
        self, base: Mapping[str, Any], settings: Mapping[str, Any], known: Sequence[str]
    ) -> dict[str, Any]:
        """Columns of ``base`` with ``settings`` applied and derived features recomputed.

        Base features are set first; then each derived setting changes the input it
        adjusts (solved with the other inputs as set), in the order of the derived
        features; finally all derived features are recomputed.  Works column-wise on
        numpy arrays or torch tensors (settings broadcast against the base).
        """
        self.check_settings(settings, known)
        cols = dict(base)
        for n, v in settings.items():
            if n not in self.names:
                cols[n] = v
        cols = self.compute(cols)
        for f in self.features:
            if f.name in settings:
                missing = [x for x in f.inputs if x not in cols and x != f.adjusts]
                if missing:
                    raise SettingError(f"setting {f.name!r} needs the inputs {missing}")
                # the adjusted input's own (old) value is not used by the inverse
                args = (cols.get(x, np.nan) for x in f.inputs)
                cols[f.adjusts] = f.solve(settings[f.name], *args)
                cols = self.compute(cols)
        return cols

    def __repr__(self) -> str:
        return f"<DerivedFeatures: {', '.join(self.names) or 'none'}>"


def _sum3(a: Any, b: Any, c: Any) -> Any:
    return a + b + c


def _ratio(num: Any, den: Any) -> Any:
    return num / _positive(den)


def _scale(value: Any, num: Any, den: Any) -> Any:
    return value * den


#: Derived features of the concrete ``mix`` modality (see the module docstring).
CONCRETE_DERIVED = DerivedFeatures(
    [
        DerivedFeature("binder", ("cement", "blast_furnace_slag", "fly_ash"), _sum3),
        DerivedFeature(
            "water_cement_ratio", ("water", "cement"), _ratio, adjusts="water", solve=_scale
        ),
        DerivedFeature(
            "water_binder_ratio", ("water", "binder"), _ratio, adjusts="water", solve=_scale
        ),
    ]
)
