"""Steels with heat treatment, composition and inclusions → a :class:`~twin.cohort.Cohort`.

Reads the NIMS MatNavi fatigue table of carbon and low-alloy steels in the form
published by Xiong, Zhang and Shi (*Machine learning of mechanical properties of
steels*, Sci. China Tech. Sci. 2020; 360 steels, GPL-3 via
``George-JieXIONG/Materials-Dataset``).  Each row is one steel: heat-treatment
temperatures, chemical composition, reduction ratio, inclusion contents, and the
measured fatigue strength, tensile strength, fracture strength and hardness.

The table carries no units.  Those used here are the conventions of the NIMS fatigue
data sheets, consistent with the value ranges of the published table, and are
**assumed**, not read from the file:

=====================================  ========================  ============  =====
column                                 feature                   unit          note
=====================================  ========================  ============  =====
Normalized Temperature                 normalizing_temperature   Cel (°C)      825–900
Quenching Temperature                  quenching_temperature     Cel (°C)      825–865
Temperaing Temperature (sic)           tempering_temperature     Cel (°C)      550–680
C, Si, Mn, P, S, Ni, Cr, Cu, Mo        same                      wt%           mass percent
RR                                     reduction_ratio           1             ingot-to-bar
dA, dB, dC                             same                      %             area %
Fatigue Strength (10E7 Cycles)         fatigue_strength          MPa           at 10^7 cycles
Tensile Strength                       tensile_strength          MPa
Fracture Strength                      fracture_strength         MPa
Hardness                               hardness                  HV            Vickers
=====================================  ========================  ============  =====

``dA``, ``dB``, ``dC`` are the JIS G 0555 cleanliness ratings: area percent of
inclusions deformed by plastic work (sulfides), of discontinuous arrays (alumina) and
of isolated granular inclusions (oxides).  ``RR`` is the reduction ratio of hot
working (cross-section of the ingot over that of the bar, dimensionless).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from twin.cohort import Cohort
from twin.io.tables import read_table_cohort, separator_hint
from twin.materials.graph import GRAPH_ATTR, ProcessGraph

__all__ = ["NIMS_COLUMNS", "read_nims", "steel_graph"]

#: feature → (modality, accepted column headers, unit, display).
NIMS_COLUMNS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "C": ("composition", ("C",), "wt%", "Carbon"),
    "Si": ("composition", ("Si",), "wt%", "Silicon"),
    "Mn": ("composition", ("Mn",), "wt%", "Manganese"),
    "P": ("composition", ("P",), "wt%", "Phosphorus"),
    "S": ("composition", ("S",), "wt%", "Sulfur"),
    "Ni": ("composition", ("Ni",), "wt%", "Nickel"),
    "Cr": ("composition", ("Cr",), "wt%", "Chromium"),
    "Cu": ("composition", ("Cu",), "wt%", "Copper"),
    "Mo": ("composition", ("Mo",), "wt%", "Molybdenum"),
    "normalizing_temperature": (
        "processing",
        ("Normalized Temperature", "Normalizing Temperature"),
        "Cel",
        "Normalizing temperature",
    ),
    "quenching_temperature": (
        "processing",
        ("Quenching Temperature",),
        "Cel",
        "Quenching (through-hardening) temperature",
    ),
    "tempering_temperature": (
        "processing",
        ("Temperaing Temperature", "Tempering Temperature"),
        "Cel",
        "Tempering temperature",
    ),
    "reduction_ratio": ("processing", ("RR",), "1", "Reduction ratio of hot working"),
    "dA": ("inclusions", ("dA",), "%", "Area % of plastically deformed inclusions (JIS A)"),
    "dB": ("inclusions", ("dB",), "%", "Area % of discontinuous-array inclusions (JIS B)"),
    "dC": ("inclusions", ("dC",), "%", "Area % of isolated inclusions (JIS C)"),
    "fatigue_strength": (
        "properties",
        ("Fatigue Strength (10E7 Cycles)",),
        "MPa",
        "Fatigue strength at 10^7 cycles",
    ),
    "tensile_strength": ("properties", ("Tensile Strength",), "MPa", "Tensile strength"),
    "fracture_strength": ("properties", ("Fracture Strength",), "MPa", "Fracture strength"),
    "hardness": ("properties", ("Hardness",), "HV", "Vickers hardness"),
}

CITATION = (
    "NIMS MatNavi fatigue data sheets, as compiled by J. Xiong, T.-Y. Zhang, S.-Q. Shi, "
    "Machine learning of mechanical properties of steels, Sci. China Tech. Sci. (2020); GPL-3"
)

_MODALITIES = ("composition", "processing", "inclusions", "properties")


def steel_graph() -> ProcessGraph:
    """The process graph of a steel cohort.

    ``composition`` and ``processing`` may inform ``inclusions`` (structure) and
    ``properties``; ``inclusions`` may inform ``properties``.
    """
    return ProcessGraph(
        {
            "composition": "composition",
            "processing": "processing",
            "inclusions": "structure",
            "properties": "property",
        },
        [
            ("composition", "inclusions"),
            ("processing", "inclusions"),
            ("inclusions", "properties"),
            ("composition", "properties"),
            ("processing", "properties"),
        ],
        descriptions={
            "composition": "chemical composition, wt%",
            "processing": "heat-treatment temperatures (Cel) and hot-working reduction ratio",
            "inclusions": "JIS inclusion ratings dA, dB, dC (area %): cleanliness",
            "properties": "fatigue, tensile and fracture strength (MPa), hardness (HV)",
        },
    )


def _header(path: str | os.PathLike | pd.DataFrame, csv_options: Mapping | None) -> list[str]:
    if isinstance(path, pd.DataFrame):
        return [str(c) for c in path.columns]
    if not Path(path).exists():
        raise FileNotFoundError(f"no table at {path}")
    return [str(c) for c in pd.read_csv(path, nrows=0, **dict(csv_options or {})).columns]


def read_nims(
    path: str | os.PathLike | pd.DataFrame, *, csv_options: Mapping | None = None
) -> Cohort:
    """Read the NIMS steel fatigue table into a cohort; bad rows are skipped and reported.

    Parameters
    ----------
    path
        CSV (or DataFrame) with the column headers listed in :data:`NIMS_COLUMNS`
        (those of the published table; the misspelt ``Temperaing Temperature`` and
        the corrected spelling are both accepted).
    csv_options
        Extra :func:`pandas.read_csv` arguments, e.g. ``{"sep": ";"}``.

    Returns
    -------
    Cohort
        One individual per row, ``steel-001``, ``steel-002``, ... in row order (the
        table has no id, so ids depend on row order).  Static modalities
        ``composition`` (wt%), ``processing`` (Cel; reduction ratio dimensionless),
        ``inclusions`` (area %) and ``properties`` (MPa; hardness HV), units as in the
        module docstring (assumed).  Empty cells are missing values (a steel without
        inclusion ratings keeps its other modalities).  Attributes
        ``twin_table_report``, ``twin_process_graph`` (:func:`steel_graph`),
        ``twin_domain``, ``twin_source_citation``.

    Raises
    ------
    ValueError
        Naming the file and the missing column(s) if a column is absent.

    Notes
    -----
    Rows are skipped, counted and reported for a non-numeric value, a negative
    temperature, ratio, strength or hardness, or a composition or inclusion content
    outside 0–100 %.
    """
    header = _header(path, csv_options)
    name = "<DataFrame>" if isinstance(path, pd.DataFrame) else str(path)
    column_of: dict[str, str] = {}
    missing = []
    for feature, (_, aliases, _, _) in NIMS_COLUMNS.items():
        found = [a for a in aliases if a in header]
        if found:
            column_of[feature] = found[0]
        else:
            missing.append(aliases[0])
    if missing:
        raise ValueError(
            f"{name}: {separator_hint(header)}missing NIMS column(s) {missing}; the table has {header[:8]}"
        )
    modalities: dict[str, list[str]] = {m: [] for m in _MODALITIES}
    units, displays, rename, bounds = {}, {}, {}, {}
    for feature, (modality, _, unit, display) in NIMS_COLUMNS.items():
        col = column_of[feature]
        modalities[modality].append(col)
        units[col] = unit
        displays[col] = display
        rename[col] = feature
        bounds[col] = (0.0, 100.0) if unit in ("wt%", "%") else (0.0, None)
    graph = steel_graph()
    cohort = read_table_cohort(
        path,
        id_column=None,
        id_prefix="steel-",
        csv_options=csv_options,
        modalities=modalities,
        units=units,
        displays=displays,
        rename=rename,
        bounds=bounds,
        attrs={
            GRAPH_ATTR: graph.to_dict(),
            "twin_domain": "materials/steel",
            "twin_source_citation": CITATION,
        },
    )
    graph.validate_against(cohort)
    return cohort
