"""A property measured over age → one static feature per test age.

Concrete is tested at a handful of standard ages (3, 7, 28, 90 days, ...), and most
mixes are tested at only some of them.  The static population model
(:class:`twin.TwinModel`) works with feature-level masks, so a strength curve fits it
as a static modality with one feature per *canonical* age (``fc_3d``, ``fc_7d``,
``fc_28d``, ...), each observed or masked.  :func:`strength_at_ages` builds that
modality from the longitudinal one.

Mapping of ages
---------------
Each observation at age ``t`` goes to the canonical age ``c`` nearest in log-age,
provided ``|ln(t / c)| <= ln(1 + tolerance)``; observations farther from every
canonical age are left out of the new modality (and counted in the report).  With the
defaults (:data:`CONCRETE_AGES`, tolerance 5 %) the UCI concrete table maps
91 → 90 d and 360 → 365 d; its 1-day (2 mixes) and 120-day (3 mixes) tests are left
out: too few mixes to learn a feature from.  Several observations of one mix at one
canonical age (replicate specimens, or a 90- and a 91-day test) are averaged.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from twin.cohort import Cohort, FeatureSchema
from twin.cohort.build import feature_coords
from twin.materials.graph import GRAPH_ATTR, ProcessGraph

__all__ = [
    "AGE_MAPPING_ATTR",
    "CONCRETE_AGES",
    "age_feature",
    "canonical_ages",
    "feature_age",
    "strength_at_ages",
]

#: Canonical test ages (days) of the UCI concrete table.
CONCRETE_AGES: tuple[float, ...] = (3, 7, 14, 28, 56, 90, 100, 180, 270, 365)

#: Cohort attribute holding the age mapping report (JSON).
AGE_MAPPING_ATTR = "twin_age_mapping"

_FEATURE_RE = re.compile(r"^(?P<prefix>.+)_(?P<age>[0-9]+(?:\.[0-9]+)?)d$")


def age_feature(age: float, prefix: str = "fc") -> str:
    """Feature name of a canonical age: ``age_feature(28) == "fc_28d"``."""
    if not (age > 0 and math.isfinite(age)):
        raise ValueError(f"ages must be positive and finite, got {age}")
    return f"{prefix}_{float(age):g}d"


def feature_age(name: str) -> float:
    """Inverse of :func:`age_feature`: ``feature_age("fc_28d") == 28.0``."""
    match = _FEATURE_RE.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not an age feature name like 'fc_28d'")
    return float(match["age"])


def canonical_ages(
    t: Sequence[float] | np.ndarray, ages: Sequence[float] = CONCRETE_AGES, tolerance: float = 0.05
) -> np.ndarray:
    """The canonical age each age maps to (see the module docstring); NaN where none.

    Examples
    --------
    >>> canonical_ages([91, 360, 1, 28]).tolist()
    [90.0, 365.0, nan, 28.0]
    """
    t = np.asarray(t, dtype=float)
    grid = np.asarray(ages, dtype=float)
    out = np.full(t.shape, np.nan)
    ok_t = np.isfinite(t) & (t > 0)
    if ok_t.any():
        nearest, ok = _map_ages(t[ok_t], grid, tolerance)
        out[ok_t] = np.where(ok, grid[nearest], np.nan)
    return out


def _map_ages(t: np.ndarray, ages: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest canonical age in log-age per time, and whether it is close enough."""
    dist = np.abs(np.log(t[:, None]) - np.log(ages[None, :]))
    nearest = dist.argmin(axis=1)
    ok = dist[np.arange(len(t)), nearest] <= math.log1p(tolerance) + 1e-12
    return nearest, ok


def strength_at_ages(
    cohort: Cohort,
    ages: Sequence[float] = CONCRETE_AGES,
    *,
    modality: str = "strength",
    feature: str = "compressive_strength",
    name: str = "strength_at_age",
    prefix: str = "fc",
    tolerance: float = 0.05,
) -> Cohort:
    """Add a static modality holding a longitudinal feature at canonical ages.

    Parameters
    ----------
    cohort
        A cohort whose ``modality`` is longitudinal, with ``visit_t`` the age in days
        (e.g. from :func:`twin.materials.read_concrete`).
    ages
        Canonical ages in days, strictly increasing.
    modality, feature
        The longitudinal modality and the feature in it.
    name
        Name of the new static modality.
    prefix
        Feature names are ``f"{prefix}_{age:g}d"`` (``fc_28d``).
    tolerance
        Relative tolerance of the age mapping: ``t`` maps to the canonical age ``c``
        nearest in log-age when ``|ln(t / c)| <= ln(1 + tolerance)``.

    Returns
    -------
    Cohort
        ``cohort`` with the static modality ``name`` added (one continuous feature
        per canonical age, unit and display taken from ``feature``; NaN and masked
        where the individual was not tested near that age).  The attribute
        ``twin_age_mapping`` records the ages, which observed ages were mapped to
        which canonical age and how many observations were left out per age.  If
        the cohort carries a process graph, ``name`` joins it with the role and
        parents of ``modality``.

    Examples
    --------
    >>> from twin.datasets import concrete_csv_path
    >>> from twin.materials import read_concrete
    >>> c = strength_at_ages(read_concrete(concrete_csv_path()))
    >>> c.features("strength_at_age")["name"].tolist()[:4]
    ['fc_3d', 'fc_7d', 'fc_14d', 'fc_28d']
    """
    if modality not in cohort.longitudinal_modalities:
        raise ValueError(
            f"{modality!r} is not a longitudinal modality of the cohort; longitudinal: "
            f"{cohort.longitudinal_modalities}"
        )
    if name in cohort.modalities:
        raise ValueError(f"cohort already has a modality {name!r}")
    grid = np.asarray([float(a) for a in ages])
    if grid.size == 0 or not np.all(np.isfinite(grid)) or (grid <= 0).any():
        raise ValueError(f"ages must be positive and finite, got {list(ages)}")
    if (np.diff(grid) <= 0).any():
        raise ValueError(f"ages must be strictly increasing, got {list(ages)}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    feats = cohort.features(modality).set_index("name")
    if feature not in feats.index:
        raise KeyError(f"modality {modality!r} has no feature {feature!r}: {list(feats.index)}")
    j = list(feats.index).index(feature)
    vals = cohort.values(modality)[:, :, j]
    mask = cohort.mask(modality)[:, :, j]
    t = cohort.times()
    rows, visits = np.nonzero(mask & np.isfinite(t) & (t > 0))
    t_obs = t[rows, visits]
    nearest, ok = (
        _map_ages(t_obs, grid, tolerance) if len(rows) else (np.zeros(0, int), np.zeros(0, bool))
    )

    n, k = len(cohort), len(grid)
    total = np.zeros((n, k))
    count = np.zeros((n, k))
    np.add.at(total, (rows[ok], nearest[ok]), vals[rows[ok], visits[ok]])
    np.add.at(count, (rows[ok], nearest[ok]), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count > 0, total / np.maximum(count, 1), np.nan)

    mapped = {
        f"{a:g}": float(grid[c])
        for a, c in sorted(set(zip(t_obs[ok].tolist(), nearest[ok].tolist(), strict=True)))
        if not math.isclose(a, grid[c])
    }
    dropped = pd.Series(t_obs[~ok]).value_counts().sort_index()
    unmapped_zero = int((mask & ~(np.isfinite(t) & (t > 0))).sum())
    report = {
        "modality": modality,
        "feature": feature,
        "name": name,
        "ages": grid.tolist(),
        "tolerance": float(tolerance),
        "mapped": mapped,
        "dropped": {f"{a:g}": int(c) for a, c in dropped.items()},
        "dropped_nonpositive_age": unmapped_zero,
        "n_observations": int(len(rows)),
        "n_kept": int(ok.sum()),
        "n_averaged": int(ok.sum() - (count > 0).sum()),
    }

    base = feats.loc[feature]
    new_features = tuple(
        FeatureSchema(
            name=age_feature(a, prefix),
            type="continuous",
            unit=str(base["unit"]),
            system="",
            code="",
            display=f"{base['display'] or feature} at {a:g} d",
        )
        for a in grid
    )
    ds = cohort.data.copy(deep=False)
    dim = f"{name}_feature"
    ds = ds.assign_coords(feature_coords(name, new_features))
    ds[name] = (("individual", dim), out)
    ds[f"{name}_mask"] = (("individual", dim), count > 0)
    mods = json.loads(ds.attrs["twin_modalities"])
    mods[name] = {"longitudinal": False}
    attrs = {**ds.attrs, "twin_modalities": json.dumps(mods), AGE_MAPPING_ATTR: json.dumps(report)}
    if GRAPH_ATTR in ds.attrs:
        graph = ProcessGraph.from_cohort(cohort)
        if modality in graph.modalities:
            d = graph.to_dict()
            d["nodes"].append(
                {
                    "name": name,
                    "role": graph.role(modality),
                    "description": f"{feature} at ages {', '.join(f'{a:g}' for a in grid)} d",
                }
            )
            d["edges"].extend([[p, name] for p in graph.upstream(modality, direct=True)])
            attrs[GRAPH_ATTR] = json.dumps(ProcessGraph.from_dict(d).to_dict())
    ds.attrs = attrs
    return Cohort(ds)
