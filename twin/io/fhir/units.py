"""UCUM unit normalisation: a small, explicit table instead of a full UCUM parser.

Every unit twin knows has a *dimension* and an affine map to that dimension's base
unit (``base = factor * value + offset``).  Two units convert into each other only
when they share a dimension; a mass concentration converts to a molar one only for
analytes whose molar mass is listed in :data:`MOLAR_MASS`.  A unit missing from
the table is its own dimension, so it never mixes with anything else.

Deliberately *not* convertible: ``mL/min`` and ``mL/min/{1.73_m2}`` (UCUM treats the
``{1.73_m2}`` annotation as 1, but a body-surface-normalised eGFR is a different
quantity), ``%`` and ``1``, ``[IU]`` and ``U`` except for the enzyme activities in
:data:`IU_EQUALS_U`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    """A UCUM unit: ``base = factor * value + offset`` in the base unit of ``dimension``."""

    code: str
    dimension: str
    factor: float = 1.0
    offset: float = 0.0


def _table(dimension: str, entries: dict[str, float]) -> dict[str, Unit]:
    return {code: Unit(code, dimension, factor) for code, factor in entries.items()}


#: Known UCUM units (case-sensitive codes), grouped by dimension.
UNITS: dict[str, Unit] = {
    **_table(
        "mass",
        {
            "kg": 1.0,
            "g": 1e-3,
            "mg": 1e-6,
            "ug": 1e-9,
            "[lb_av]": 0.45359237,
            "[oz_av]": 0.028349523125,
        },
    ),
    **_table("length", {"m": 1.0, "cm": 1e-2, "mm": 1e-3, "[in_i]": 0.0254, "[ft_i]": 0.3048}),
    **_table("pressure", {"mm[Hg]": 1.0, "kPa": 7.500615, "Pa": 7.500615e-3, "cm[H2O]": 0.7355592}),
    **_table(
        "mass-concentration",
        {
            "g/L": 1.0,
            "g/dL": 10.0,
            "mg/dL": 1e-2,
            "mg/L": 1e-3,
            "mg/mL": 1.0,
            "ug/mL": 1e-3,
            "ug/dL": 1e-5,
            "ug/L": 1e-6,
            "ng/mL": 1e-6,
            "ng/dL": 1e-8,
            "ng/L": 1e-9,
            "pg/mL": 1e-9,
        },
    ),
    **_table(
        "molar-concentration",
        {"mol/L": 1.0, "mmol/L": 1e-3, "umol/L": 1e-6, "nmol/L": 1e-9, "pmol/L": 1e-12},
    ),
    **_table(
        "number-concentration",
        {
            "/L": 1.0,
            "10*9/L": 1e9,
            "10*12/L": 1e12,
            "/uL": 1e6,
            "/mm3": 1e6,
            "10*3/uL": 1e9,
            "10*6/uL": 1e12,
        },
    ),
    **_table("enzyme-activity-concentration", {"U/L": 1.0, "mU/L": 1e-3, "U/mL": 1e3}),
    **_table(
        "iu-concentration",
        {"[IU]/L": 1.0, "m[IU]/L": 1e-3, "[IU]/mL": 1e3, "k[IU]/L": 1e3, "m[IU]/mL": 1.0},
    ),
    **_table("volume", {"L": 1.0, "dL": 0.1, "mL": 1e-3, "uL": 1e-6, "fL": 1e-15}),
    **_table("rate", {"/min": 1.0, "/s": 60.0, "/h": 1 / 60}),
    **_table("flow", {"mL/min": 1.0, "L/min": 1e3, "mL/s": 60.0}),
    **_table("flow-per-bsa", {"mL/min/{1.73_m2}": 1.0}),
    **_table("area-density", {"kg/m2": 1.0, "g/cm2": 10.0}),
    **_table("mass-ratio", {"mg/g": 1.0, "g/g": 1e3, "mg/mg": 1e3}),
    **_table("percent", {"%": 1.0}),
    **_table("mass", {"pg": 1e-15}),
    **_table(
        "time",
        {
            "s": 1.0,
            "min": 60.0,
            "h": 3600.0,
            "d": 86400.0,
            "wk": 604800.0,
            "mo": 2629800.0,
            "a": 31557600.0,
        },
    ),
    "Cel": Unit("Cel", "temperature", 1.0, 0.0),
    "[degF]": Unit("[degF]", "temperature", 5 / 9, -32 * 5 / 9),
    "K": Unit("K", "temperature", 1.0, -273.15),
}

#: Common non-UCUM spellings seen in real records, mapped to their UCUM code.
SYNONYMS: dict[str, str] = {
    "mmHg": "mm[Hg]",
    "mm Hg": "mm[Hg]",
    "mm[hg]": "mm[Hg]",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "[lb_us]": "[lb_av]",
    "oz": "[oz_av]",
    "in": "[in_i]",
    "inch": "[in_i]",
    "ft": "[ft_i]",
    "degF": "[degF]",
    "°F": "[degF]",
    "degC": "Cel",
    "°C": "Cel",
    "C": "Cel",
    "IU/L": "[IU]/L",
    "mIU/L": "m[IU]/L",
    "mIU/mL": "m[IU]/mL",
    "IU/mL": "[IU]/mL",
    "kIU/L": "k[IU]/L",
    "K/uL": "10*3/uL",
    "10^3/uL": "10*3/uL",
    "x10E3/uL": "10*3/uL",
    "thou/uL": "10*3/uL",
    "M/uL": "10*6/uL",
    "10^6/uL": "10*6/uL",
    "x10E6/uL": "10*6/uL",
    "mill/uL": "10*6/uL",
    "10^9/L": "10*9/L",
    "10^12/L": "10*12/L",
    "ng/dl": "ng/dL",
    "mg/dl": "mg/dL",
    "g/dl": "g/dL",
    "ug/dl": "ug/dL",
    "ml": "mL",
    "dl": "dL",
    "l": "L",
    "ul": "uL",
    "fl": "fL",
    "beats/min": "/min",
    "{beats}/min": "/min",
    "/minute": "/min",
    "bpm": "/min",
    "breaths/min": "/min",
    "{breaths}/min": "/min",
    "kg/m^2": "kg/m2",
    "kg/m²": "kg/m2",
    "mL/min/1.73m2": "mL/min/{1.73_m2}",
    "mL/min/1.73_m2": "mL/min/{1.73_m2}",
    "mL/min/{1.73m2}": "mL/min/{1.73_m2}",
    "ml/min/1.73m2": "mL/min/{1.73_m2}",
    "ml/min": "mL/min",
    "(score)": "{score}",
    "score": "{score}",
    "percent": "%",
}

#: Molar masses (g/mol) of analytes, by LOINC code, allowing mg/dL <-> mmol/L.
MOLAR_MASS: dict[str, float] = {
    # glucose
    "2339-0": 180.156,
    "2345-7": 180.156,
    "15074-8": 180.156,
    "14749-6": 180.156,
    "41653-7": 180.156,
    # cholesterol (total, HDL, LDL)
    "2093-3": 386.654,
    "2085-9": 386.654,
    "18262-6": 386.654,
    "13457-7": 386.654,
    "14647-2": 386.654,
    "14646-4": 386.654,
    "22748-8": 386.654,
    # triglycerides (as triolein)
    "2571-8": 885.432,
    "14927-8": 885.432,
    # creatinine
    "2160-0": 113.12,
    "38483-4": 113.12,
    "14682-9": 113.12,
    # urea nitrogen (as N2 per urea molecule)
    "6299-2": 28.014,
    "3094-0": 28.014,
    "14937-7": 28.014,
    # calcium
    "17861-6": 40.078,
    "49765-1": 40.078,
    "2000-8": 40.078,
    # total bilirubin
    "1975-2": 584.66,
    "42719-5": 584.66,
    "14631-6": 584.66,
    # uric acid
    "3084-1": 168.11,
    "14933-6": 168.11,
}

#: Enzyme activities reported interchangeably in IU/L and U/L (1 IU = 1 umol/min = 1 U).
IU_EQUALS_U: frozenset[str] = frozenset(
    {
        "1742-6",
        "1920-8",
        "6768-6",
        "2324-2",
        "2532-0",
        "1798-8",
        "2157-6",
        "1744-2",
        "30239-8",
        "1743-4",
    }
)

#: Preferred (canonical) unit of common LOINC codes; others use their most frequent unit.
PREFERRED_UNIT: dict[str, str] = {
    "29463-7": "kg",
    "3141-9": "kg",
    "8302-2": "cm",
    "8306-3": "cm",
    "9843-4": "cm",
    "8287-5": "cm",
    "39156-5": "kg/m2",
    "8480-6": "mm[Hg]",
    "8462-4": "mm[Hg]",
    "8478-0": "mm[Hg]",
    "8310-5": "Cel",
    "8331-1": "Cel",
    "8867-4": "/min",
    "9279-1": "/min",
    "2708-6": "%",
    "59408-5": "%",
    "4548-4": "%",
    "4544-3": "%",
    "20570-8": "%",
    "33914-3": "mL/min/{1.73_m2}",
    "48642-3": "mL/min/{1.73_m2}",
    "48643-1": "mL/min/{1.73_m2}",
    "62238-1": "mL/min/{1.73_m2}",
    "2339-0": "mg/dL",
    "2345-7": "mg/dL",
    "2093-3": "mg/dL",
    "2085-9": "mg/dL",
    "18262-6": "mg/dL",
    "2571-8": "mg/dL",
    "38483-4": "mg/dL",
    "2160-0": "mg/dL",
    "6299-2": "mg/dL",
    "3094-0": "mg/dL",
    "49765-1": "mg/dL",
    "17861-6": "mg/dL",
    "718-7": "g/dL",
    "10834-0": "g/L",
    "1742-6": "U/L",
    "1920-8": "U/L",
    "6768-6": "U/L",
}

#: Codes reported in a single unit in practice, whose unit-less quantities are read in it
#: when the value lies in that unit's physiological range ``(unit, low, high)``; other
#: unit-less values stay skipped (``missing-unit``).  Synthea writes some blood-pressure
#: components without a unit; a kPa value (about 5-40) falls outside these ranges.
ASSUMED_UNIT: dict[str, tuple[str, float, float]] = {
    "8480-6": ("mm[Hg]", 50.0, 300.0),  # systolic
    "8462-4": ("mm[Hg]", 25.0, 200.0),  # diastolic
    "8478-0": ("mm[Hg]", 30.0, 250.0),  # mean
}

#: Plausible ranges ``(low, high, unit)`` by LOINC code; values outside are rejected.
PLAUSIBLE: dict[str, tuple[float, float, str]] = {
    "29463-7": (0.0, 700.0, "kg"),  # body weight
    "3141-9": (0.0, 700.0, "kg"),
    "8302-2": (10.0, 300.0, "cm"),  # body height
    "8306-3": (10.0, 300.0, "cm"),
    "9843-4": (10.0, 100.0, "cm"),  # head circumference
    "39156-5": (5.0, 250.0, "kg/m2"),  # BMI
    "8480-6": (0.0, 400.0, "mm[Hg]"),  # systolic
    "8462-4": (0.0, 300.0, "mm[Hg]"),  # diastolic
    "8478-0": (0.0, 350.0, "mm[Hg]"),  # mean
    "8310-5": (10.0, 50.0, "Cel"),  # body temperature
    "8331-1": (10.0, 50.0, "Cel"),
    "8867-4": (0.0, 400.0, "/min"),  # heart rate
    "9279-1": (0.0, 200.0, "/min"),  # respiratory rate
    "2708-6": (0.0, 100.0, "%"),  # SpO2
    "59408-5": (0.0, 100.0, "%"),
    "4548-4": (0.0, 100.0, "%"),  # HbA1c
    "4544-3": (0.0, 100.0, "%"),  # haematocrit
    "20570-8": (0.0, 100.0, "%"),
    "72514-3": (0.0, 10.0, "{score}"),  # pain 0-10
}

#: Dimensions whose quantities can never be negative.
NON_NEGATIVE: frozenset[str] = frozenset(
    {
        "mass",
        "length",
        "pressure",
        "mass-concentration",
        "molar-concentration",
        "number-concentration",
        "enzyme-activity-concentration",
        "iu-concentration",
        "volume",
        "rate",
        "flow",
        "flow-per-bsa",
        "area-density",
        "mass-ratio",
        "time",
    }
)


def normalise_unit(code: object, text: object = None) -> str:
    """The UCUM code of a quantity's unit: its ``code``, else its ``unit`` text; '' if none.

    Known non-UCUM spellings (``mmHg``, ``lbs``, ``K/uL``, ...) map to UCUM codes.
    """
    for raw in (code, text):
        if isinstance(raw, str) and raw.strip():
            u = raw.strip()
            return SYNONYMS.get(u, u)
    return ""


def unit_info(unit: str) -> Unit:
    """The table entry of a unit; an unknown unit is its own dimension."""
    return UNITS.get(unit) or Unit(unit, f"unit:{unit}")


def dimension_key(loinc: str, unit: str) -> str:
    """The group of units a value of ``loinc`` in ``unit`` can be converted within.

    Mass and molar concentrations share a group when the analyte's molar mass is
    known; IU/L and U/L share one for the enzymes in :data:`IU_EQUALS_U`.
    """
    dim = unit_info(unit).dimension
    if dim in ("mass-concentration", "molar-concentration") and loinc in MOLAR_MASS:
        return "analyte-concentration"
    if dim in ("enzyme-activity-concentration", "iu-concentration") and loinc in IU_EQUALS_U:
        return "enzyme-activity-concentration"
    return dim


def conversion(loinc: str, source: str, target: str) -> tuple[float, float] | None:
    """``(scale, shift)`` with ``target_value = scale * value + shift``; None if impossible."""
    if source == target:
        return (1.0, 0.0)
    a, b = unit_info(source), unit_info(target)
    if a.dimension == b.dimension:
        if a.dimension.startswith("unit:"):
            return None
        return (a.factor / b.factor, (a.offset - b.offset) / b.factor)
    dims = {a.dimension, b.dimension}
    if dims == {"mass-concentration", "molar-concentration"} and loinc in MOLAR_MASS:
        molar_mass = MOLAR_MASS[loinc]  # g/mol: g/L = mol/L * M
        to_base = a.factor * (molar_mass if a.dimension == "molar-concentration" else 1.0)
        from_base = b.factor * (molar_mass if b.dimension == "molar-concentration" else 1.0)
        return (to_base / from_base, 0.0)
    if dims == {"enzyme-activity-concentration", "iu-concentration"} and loinc in IU_EQUALS_U:
        return (a.factor / b.factor, 0.0)
    return None


def plausible_range(loinc: str, unit: str) -> tuple[float, float]:
    """Accepted ``[low, high]`` for a value of ``loinc`` in ``unit`` (may be infinite)."""
    low, high = -math.inf, math.inf
    if unit_info(unit).dimension in NON_NEGATIVE:
        low = 0.0
    if loinc in PLAUSIBLE:
        lo, hi, table_unit = PLAUSIBLE[loinc]
        conv = conversion(loinc, table_unit, unit)
        if conv is not None:
            scale, shift = conv
            ends = sorted((scale * lo + shift, scale * hi + shift))
            low, high = max(low, ends[0]), ends[1]
    return low, high
