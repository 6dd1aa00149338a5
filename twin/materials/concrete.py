"""Concrete mixes → a :class:`~twin.cohort.Cohort` (UCI Concrete Compressive Strength).

The table (I-Cheng Yeh, *UCI Concrete Compressive Strength*, DOI 10.24432/C5PK67,
CC BY 4.0) has one row per tested specimen group: the seven mix components in kg per
m³ of concrete, the age at test in days and the compressive strength in MPa.  A
``mix_id`` column groups rows of the same mix tested at several ages.

In the cohort

* an individual is a mix (``mix_id``);
* the static modality ``mix`` holds the seven components (``kg/m3``) and three
  derived features (see :data:`DERIVED`);
* the longitudinal modality ``strength`` holds ``compressive_strength`` (``MPa``) on
  the age axis: no calendar, ``visit_t`` is the age in days;
* the attribute ``twin_process_graph`` holds :func:`concrete_graph` (mix → strength).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd

from twin.cohort import Cohort
from twin.io.tables import read_table_cohort
from twin.materials.graph import GRAPH_ATTR, ProcessGraph

__all__ = ["DERIVED", "MIX_COMPONENTS", "concrete_graph", "read_concrete"]

#: Mix components (columns of the table), all in kg per m³ of concrete.
MIX_COMPONENTS: dict[str, str] = {
    "cement": "Cement",
    "blast_furnace_slag": "Blast furnace slag",
    "fly_ash": "Fly ash",
    "water": "Water",
    "superplasticizer": "Superplasticizer",
    "coarse_aggregate": "Coarse aggregate",
    "fine_aggregate": "Fine aggregate",
}

#: Derived features of ``mix``: name → (unit, display).
DERIVED: dict[str, tuple[str, str]] = {
    "binder": ("kg/m3", "Binder: cement + blast furnace slag + fly ash"),
    "water_cement_ratio": ("1", "Water/cement ratio by mass"),
    "water_binder_ratio": ("1", "Water/binder ratio by mass (binder = cement + slag + fly ash)"),
}

ID_COLUMN = "mix_id"
AGE_COLUMN = "age_days"
STRENGTH_COLUMN = "compressive_strength_mpa"
CITATION = (
    "I-Cheng Yeh, Concrete Compressive Strength, UCI Machine Learning Repository, "
    "DOI 10.24432/C5PK67, CC BY 4.0"
)


def concrete_graph() -> ProcessGraph:
    """The process graph of a concrete cohort: ``mix`` (composition) → ``strength`` (property).

    Age is the cohort's time axis, not a node.
    """
    return ProcessGraph(
        {"mix": "composition", "strength": "property"},
        [("mix", "strength")],
        time_axis="age",
        descriptions={
            "mix": "mix proportions, kg/m3, with derived binder and water ratios",
            "strength": "compressive strength (MPa) at each test age",
        },
    )


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    """``num / den``, missing where ``den`` is zero or missing."""
    return num / den.where(den > 0)


def _binder(mix: pd.DataFrame) -> pd.Series:
    # a missing slag or fly ash amount leaves the binder unknown (no silent zero)
    return mix["cement"] + mix["blast_furnace_slag"] + mix["fly_ash"]


def read_concrete(
    path: str | os.PathLike | pd.DataFrame,
    *,
    duplicates: str = "skip",
    csv_options: Mapping | None = None,
) -> Cohort:
    """Read a concrete table into a cohort; bad rows are skipped and reported.

    Parameters
    ----------
    path
        CSV (or DataFrame) with the columns ``mix_id``, the seven components of
        :data:`MIX_COMPONENTS` (kg/m³), ``age_days`` and ``compressive_strength_mpa``.
    duplicates
        ``"skip"`` (default): rows of one mix and age with different strengths are
        skipped and reported, as neither value can be preferred.  ``"replicates"``:
        keep them as replicate specimens (another visit slot at the same age).  Rows
        identical in every column are copies and kept once either way.
    csv_options
        Extra :func:`pandas.read_csv` arguments, e.g. ``{"sep": ";"}``.

    Returns
    -------
    Cohort
        Individuals: mixes.  ``mix`` (static): the components (``kg/m3``) plus the
        derived features

        * ``binder`` = cement + blast_furnace_slag + fly_ash (``kg/m3``),
        * ``water_cement_ratio`` = water / cement (``1``, i.e. dimensionless),
        * ``water_binder_ratio`` = water / binder (``1``),

        missing where an input is missing or a denominator is zero.  ``strength``
        (longitudinal): ``compressive_strength`` (``MPa``) at ``visit_t`` = age in
        days (no calendar).  Attributes ``twin_table_report`` (skipped rows),
        ``twin_process_graph`` (:func:`concrete_graph`), ``twin_domain``,
        ``twin_source_citation``.

    Notes
    -----
    Rows are skipped for a missing ``mix_id``, a non-numeric or negative amount, age or
    strength, an age that is not a number, a component that differs between rows of one
    mix, or conflicting duplicates (see :mod:`twin.io.tables`).  An empty strength is
    allowed (an untested age contributes nothing); an empty component is missing.
    """
    comps = list(MIX_COMPONENTS)
    units = {c: "kg/m3" for c in comps}
    units.update({name: unit for name, (unit, _) in DERIVED.items()})
    units["compressive_strength"] = "MPa"
    displays = dict(MIX_COMPONENTS)
    displays.update({name: display for name, (_, display) in DERIVED.items()})
    displays["compressive_strength"] = "Compressive strength"
    graph = concrete_graph()
    cohort = read_table_cohort(
        path,
        id_column=ID_COLUMN,
        modalities={"mix": comps},
        longitudinal={"strength": [STRENGTH_COLUMN]},
        time_column=AGE_COLUMN,
        time_unit="d",
        units=units,
        displays=displays,
        rename={STRENGTH_COLUMN: "compressive_strength"},
        nonnegative=[*comps, AGE_COLUMN, STRENGTH_COLUMN],
        derived={
            "mix": {
                "binder": _binder,
                "water_cement_ratio": lambda m: _ratio(m["water"], m["cement"]),
                "water_binder_ratio": lambda m: _ratio(m["water"], _binder(m)),
            }
        },
        duplicates=duplicates,
        csv_options=csv_options,
        attrs={
            GRAPH_ATTR: graph.to_dict(),
            "twin_domain": "materials/concrete",
            "twin_source_citation": CITATION,
        },
    )
    graph.validate_against(cohort)
    return cohort
