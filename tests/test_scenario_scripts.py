"""The example scripts in ``scenarios/`` run as written (short training, demo data)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"scenario_{name}", ROOT / "scenarios" / name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_concrete_design_script_sweeps_and_designs(monkeypatch, tmp_path, capsys):
    """With no data folder the script falls back to the concrete table shipped with twin,
    and an ensemble twin goes through the sweep and the design."""
    monkeypatch.setenv("TWIN_DATA", str(tmp_path))  # empty: the demo copy is used
    script = load_script("concrete_design.py")
    assert script.data_path() is None
    script.main(["--epochs", "15", "--members", "2", "--target", "35"])
    out = capsys.readouterr().out
    assert "2 members, fitted" in out
    assert "sweep (MPa, 90 % interval; 'outside the data'" in out
    # w/c 0.35 on the base mix needs less water than any mix in the data
    assert re.search(r"\nwc0\.35_fa0 .* water(, |\n)", out)
    assert "inverse design: least cement for P(fc28 >= 35) >= 0.9" in out
    assert "nearest real mixes" in out


def test_concrete_design_script_checks_its_base_mix_before_training(monkeypatch, tmp_path, capsys):
    import pytest

    monkeypatch.setenv("TWIN_DATA", str(tmp_path))
    script = load_script("concrete_design.py")
    with pytest.raises(SystemExit) as info:
        script.main(["--base", "mix-nope"])  # 600 epochs if it trained first
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--base 'mix-nope' is not a mix of the data (mix ids such as mix-" in err


def test_steel_script_runs_on_a_nims_shaped_table(monkeypatch, tmp_path, capsys):
    """The steel what-if on the synthetic NIMS-shaped table (the real one is GPL-3, not
    shipped): the script reads ``$TWIN_DATA``, sweeps tempering and updates from hardness."""
    folder = tmp_path / "materials" / "nims_fatigue"
    folder.mkdir(parents=True)
    synthetic = ROOT / "tests" / "data" / "materials" / "nims_like_synthetic.csv"
    (folder / "nims_fatigue.csv").write_bytes(synthetic.read_bytes())
    monkeypatch.setenv("TWIN_DATA", str(tmp_path))
    load_script("steel_heat_treatment.py").main(["--epochs", "15"])
    out = capsys.readouterr().out
    assert "what-if over tempering temperature" in out
    assert "measured at its real tempering temperatures" in out
    assert "update with measured hardness" in out
    assert "fatigue_strength" in out.split("update with measured hardness")[1]


def test_steel_script_says_where_the_data_is_missing(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TWIN_DATA", str(tmp_path))
    try:
        load_script("steel_heat_treatment.py").main([])
    except SystemExit as exc:
        assert exc.code == 0
    else:  # pragma: no cover - the script must stop without the table
        raise AssertionError("the script went on without the NIMS table")
    assert "NIMS data not found" in capsys.readouterr().out
