"""Scenario definitions: YAML round trip, sweeps, grids and validation errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from twin.scenario import Intervention, Scenario, ScenarioError, dump_scenarios, load_scenarios

ROOT = Path(__file__).resolve().parents[1]

CHEMO = """\
name: chemo
description: cisplatin every 21 days
horizon: 126
step: 7
interventions:
  - agent: cisplatin
    dose: 75
    unit: mg/m2
    start: 0
    stop: 105
    interval: 21
    kernel: bolus
    half_life: 3
  - agent: dexamethasone
    dose: 8
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_round_trip_dict_and_yaml(tmp_path):
    sc = Scenario.from_yaml(write(tmp_path, CHEMO))
    assert sc.name == "chemo" and sc.horizon == 126.0 and sc.step == 7.0
    assert sc.interventions[0] == Intervention(
        "cisplatin", 75.0, "mg/m2", 0.0, 105.0, 21.0, kernel="bolus", half_life=3.0
    )
    assert Scenario.from_dict(sc.to_dict()) == sc
    other = Scenario(
        "mix",
        horizon=28,
        output_times=[0, 1, 7, 28],
        settings={"water_cement": 0.4},
        description="x",
    )
    path = tmp_path / "two.yaml"
    dump_scenarios([sc, other], path)
    assert load_scenarios(path) == [sc, other]
    sc.to_yaml(tmp_path / "one.yaml")
    assert Scenario.from_yaml(tmp_path / "one.yaml") == sc


def test_times_grid():
    assert Scenario("a", horizon=20, step=7).times().tolist() == [0, 7, 14, 20]
    assert Scenario("a", horizon=21, step=7).times().tolist() == [0, 7, 14, 21]
    assert Scenario("a", horizon=3).times().tolist() == [0, 1, 2, 3]
    t = Scenario("a", horizon=30, output_times=[0, 2.5, 30]).times(dtype=torch.float32)
    assert t.dtype == torch.float32 and t.tolist() == [0, 2.5, 30]


def test_exposure_of_scenario():
    sc = Scenario("q21", horizon=50, interventions=[Intervention("drug", dose=2.0, interval=21.0)])
    u = sc.exposure()
    assert u.shape == (51, 1)
    assert torch.nonzero(u[:, 0]).squeeze(-1).tolist() == [0, 21, 42]
    assert sc.exposure(["other", "drug"]).shape == (51, 2)


def test_sweep_expansion(tmp_path):
    text = """\
sweep:
  base:
    name: concrete
    horizon: 28
    settings: {water_cement: 0.45, temperature: 20}
    interventions:
      - {agent: curing, stop: 7}
  grid:
    settings.water_cement: [0.35, 0.45, 0.55]
    interventions.0.stop: [3, 7]
scenarios:
  - {name: reference, horizon: 28}
"""
    scs = load_scenarios(write(tmp_path, text))
    assert [s.name for s in scs] == [
        "reference",
        "concrete[water_cement=0.35,stop=3]",
        "concrete[water_cement=0.35,stop=7]",
        "concrete[water_cement=0.45,stop=3]",
        "concrete[water_cement=0.45,stop=7]",
        "concrete[water_cement=0.55,stop=3]",
        "concrete[water_cement=0.55,stop=7]",
    ]
    assert [s.settings["water_cement"] for s in scs[1:]] == [0.35, 0.35, 0.45, 0.45, 0.55, 0.55]
    assert all(s.settings["temperature"] == 20.0 for s in scs[1:])
    assert [s.interventions[0].stop for s in scs[1:3]] == [3.0, 7.0]


def test_example_files_load():
    chemo = load_scenarios(ROOT / "scenarios" / "chemo_vs_control.yaml")
    assert [s.name for s in chemo] == ["chemo_q21d", "control"]
    assert chemo[0].interventions[0].interval == 21.0 and not chemo[1].interventions
    concrete = load_scenarios(ROOT / "scenarios" / "concrete_wc_sweep.yaml")
    assert len(concrete) == 9
    assert sorted({s.settings["water_cement_ratio"] for s in concrete}) == [0.35, 0.45, 0.55]
    assert concrete[0].name == "wc0.35_fa0" and concrete[0].horizon == 365.0


def test_repr_is_readable():
    sc = Scenario(
        "chemo",
        horizon=126,
        step=7,
        interventions=[Intervention("cisplatin", dose=75, unit="mg/m2", interval=21, stop=105)],
    )
    text = repr(sc)
    assert text.startswith("Scenario('chemo', horizon=126 d, step=7 d")
    assert "Intervention('cisplatin', dose=75 mg/m2, every 21 d, day 0-105)" in text
    # without an interval: a bolus or a timed pulse is one administration, a step is continuous
    bolus = Intervention("dox", kernel="bolus", half_life=2.0)
    assert "single administration" in repr(bolus) and "bolus t1/2=2 d" in repr(bolus)
    assert "single administration" in repr(Intervention("rt", duration=1.0))
    assert "continuous" in repr(Intervention("infusion", stop=14))


@pytest.mark.parametrize(
    ("edit", "field", "fragment", "line"),
    [
        (("    dose: 75", "    dose: -5"), "interventions[0].dose", "must be >= 0", 7),
        (("    stop: 105", "    stop: -1"), "interventions[0].stop", "before start", 10),
        (("    interval: 21", "    interval: 0"), "interventions[0].interval", "must be > 0", 11),
        (
            ("    interval: 21", "    interval: weekly"),
            "interventions[0].interval",
            "must be a number",
            11,
        ),
        (("    unit: mg/m2", "    units: mg/m2"), "interventions[0].units", "unknown key", 8),
        (("step: 7", "stepsize: 7"), "stepsize", "unknown key", 4),
        (("horizon: 126", "horizon: [126]"), "horizon", "must be a number", 3),
        (
            ("    kernel: bolus", "    kernel: gaussian"),
            "interventions[0].kernel",
            "must be one of",
            12,
        ),
        (("    half_life: 3", "    route: iv"), "interventions[0].half_life", "required", 12),
    ],
)
def test_errors_name_file_scenario_field_and_line(tmp_path, edit, field, fragment, line):
    old, new = edit
    assert old in CHEMO
    path = write(tmp_path, CHEMO.replace(old, new, 1), "bad_scenario.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenarios(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "scenario 'chemo'" in msg
    assert f"field '{field}'" in msg
    assert fragment in msg
    assert f"line {line}" in msg


def test_missing_horizon_and_other_structural_errors(tmp_path):
    path = write(tmp_path, CHEMO.replace("horizon: 126\n", ""), "nohorizon.yaml")
    with pytest.raises(
        ScenarioError, match=r"nohorizon\.yaml.*scenario 'chemo'.*field 'horizon'.*required"
    ):
        load_scenarios(path)
    path = write(
        tmp_path, "scenarios:\n  - {name: a, horizon: 5}\n  - {name: a, horizon: 6}\n", "dup.yaml"
    )
    with pytest.raises(
        ScenarioError, match=r"dup\.yaml, line 3: scenario 'a': field 'name': duplicate"
    ):
        load_scenarios(path)
    path = write(tmp_path, "scenario:\n  name: a\n", "top.yaml")
    with pytest.raises(ScenarioError, match=r"top\.yaml, line 1: field 'scenario': unknown key"):
        load_scenarios(path)
    path = write(tmp_path, "name: a\nhorizon: 5\nsettings: {wc: high}\n", "settings.yaml")
    with pytest.raises(
        ScenarioError, match=r"settings\.yaml, line 3: scenario 'a': field 'settings\.wc'"
    ):
        load_scenarios(path)
    path = write(
        tmp_path, "sweep:\n  base: {name: a, horizon: 5}\n  grid: {settings.x: 3}\n", "sweep.yaml"
    )
    with pytest.raises(
        ScenarioError, match=r"sweep\.yaml, line 3: field 'sweep\.grid\.settings\.x'"
    ):
        load_scenarios(path)
    path = write(tmp_path, "name: a\nhorizon: 5\nname: b\n", "dupkey.yaml")
    with pytest.raises(ScenarioError, match=r"dupkey\.yaml, line 3: duplicate key 'name'"):
        load_scenarios(path)
    with pytest.raises(ScenarioError, match=r"holds 2 scenarios"):
        Scenario.from_yaml(ROOT / "scenarios" / "chemo_vs_control.yaml")


def test_bad_yaml_syntax_names_file_and_line(tmp_path):
    path = write(
        tmp_path,
        "name: a\nhorizon: 5\ninterventions:\n  - agent: [x\n  - agent: y\n",
        "syntax.yaml",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenarios(path)
    msg = str(info.value)
    assert str(path) in msg and "invalid YAML" in msg and "line 5" in msg


def test_python_construction_validates():
    with pytest.raises(ScenarioError, match=r"field 'dose': must be >= 0"):
        Intervention("x", dose=-1)
    with pytest.raises(ScenarioError, match=r"scenario 'a': field 'interventions\[1\]\.interval'"):
        Scenario("a", horizon=5, interventions=[Intervention("x"), {"agent": "y", "interval": -2}])
    with pytest.raises(ScenarioError, match=r"<dict>: scenario 'a': field 'times'"):
        Scenario.from_dict({"name": "a", "horizon": 5, "times": [0, 9]})
    with pytest.raises(ScenarioError, match=r"field 'step': .* got bool"):
        Scenario("a", horizon=5, step=True)


def test_exponent_floats_are_numbers():
    from twin.scenario import loads_scenarios

    (sc,) = loads_scenarios("name: a\nhorizon: 1e2\ninterventions: [{agent: x, dose: 5e-1}]\n")
    assert sc.horizon == 100.0 and sc.interventions[0].dose == 0.5


def test_intervention_starting_after_the_horizon_is_warned_about(tmp_path):
    path = tmp_path / "late.yaml"
    path.write_text(
        "scenarios:\n"
        "  - name: late\n"
        "    horizon: 120\n"
        "    interventions:\n"
        "      - {agent: cisplatin, start: 200}\n"
        "      - {agent: radiotherapy, start: 10}\n"
    )
    with pytest.warns(
        UserWarning, match=r"late.yaml: scenario 'late': \['cisplatin'\] start after"
    ):
        (sc,) = load_scenarios(path)
    assert [iv.agent for iv in sc.interventions] == ["cisplatin", "radiotherapy"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Scenario("in time", horizon=120, interventions=[Intervention("cisplatin", start=100)])


def test_an_unquoted_numeric_agent_code_gets_a_quoting_hint(tmp_path):
    path = write(tmp_path, "name: x\nhorizon: 10\ninterventions:\n  - agent: 316049\n", "c.yaml")
    with pytest.raises(
        ScenarioError,
        match=r'must be a string, got int 316049 \(codes are text: quote them, agent: "316049"',
    ):
        load_scenarios(path)


def test_agent_display_names_come_from_the_intervention_table():
    import pandas as pd

    from twin.model.dynamic_model import agent_display_names

    table = pd.DataFrame(
        {
            "agent": ["316049", "316049", "03", "9"],
            "display": ["", "Hydrochlorothiazide 25 MG", "", "x"],
        }
    )
    assert agent_display_names(table, ["316049", "03"]) == {"316049": "Hydrochlorothiazide 25 MG"}
