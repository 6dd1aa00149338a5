"""The UCUM table: conversions within a dimension, molar mass, and what must stay apart."""

from __future__ import annotations

import math

import pytest

from twin.io.fhir.units import (
    MOLAR_MASS,
    conversion,
    dimension_key,
    normalise_unit,
    plausible_range,
)


def convert(code: str, value: float, source: str, target: str) -> float:
    scale, shift = conversion(code, source, target)
    return scale * value + shift


@pytest.mark.parametrize(
    ("code", "value", "source", "target", "expected"),
    [
        ("29463-7", 154.0, "[lb_av]", "kg", 154.0 * 0.45359237),
        ("8302-2", 70.0, "[in_i]", "cm", 177.8),
        ("8310-5", 98.6, "[degF]", "Cel", 37.0),
        ("8310-5", 310.15, "K", "Cel", 37.0),
        ("8480-6", 16.0, "kPa", "mm[Hg]", 16.0 * 7.500615),
        ("10834-0", 2.5, "g/dL", "g/L", 25.0),
        ("2339-0", 5.5, "mmol/L", "mg/dL", 5.5 * MOLAR_MASS["2339-0"] / 10),
        ("2093-3", 200.0, "mg/dL", "mmol/L", 200.0 * 10 / MOLAR_MASS["2093-3"]),
        ("1742-6", 30.0, "[IU]/L", "U/L", 30.0),
        ("6690-2", 7.0, "10*3/uL", "10*9/L", 7.0),
    ],
)
def test_conversions(code, value, source, target, expected):
    assert convert(code, value, source, target) == pytest.approx(expected, rel=1e-6)
    back = convert(code, convert(code, value, source, target), target, source)
    assert back == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize(
    ("code", "source", "target"),
    [
        ("33914-3", "mL/min", "mL/min/{1.73_m2}"),  # eGFR: normalised to body surface or not
        ("99999-9", "mg/dL", "mmol/L"),  # molar mass unknown
        ("29463-7", "kg", "cm"),
        ("2857-1", "[IU]/L", "U/L"),  # not an enzyme activity
        ("4548-4", "%", "1"),
        ("x", "{score}", "{T-score}"),  # unknown annotations never mix
    ],
)
def test_incompatible_units_do_not_convert(code, source, target):
    assert conversion(code, source, target) is None
    assert dimension_key(code, source) != dimension_key(code, target)


def test_unit_spellings_normalise_to_ucum():
    assert normalise_unit("mmHg") == "mm[Hg]"
    assert normalise_unit(None, "lbs") == "[lb_av]"
    assert normalise_unit("", "K/uL") == "10*3/uL"
    assert normalise_unit("mL/min/{1.73_m2}", "ignored") == "mL/min/{1.73_m2}"
    assert normalise_unit(None, None) == "" and normalise_unit("  ") == ""


def test_plausible_ranges_follow_the_unit():
    assert plausible_range("8480-6", "mm[Hg]") == (0.0, 400.0)
    low, high = plausible_range("29463-7", "[lb_av]")
    assert low == 0.0 and high == pytest.approx(700 / 0.45359237)
    assert plausible_range("x", "mg/dL") == (0.0, math.inf)  # concentrations are >= 0
    assert plausible_range("x", "{T-score}") == (-math.inf, math.inf)
