"""``twin simulate`` through a local typer app wrapping the CLI function."""

from __future__ import annotations

import typer
import xarray as xr
from dynamic_sim import M0, P0, QC, A, B, C, H, R, b, simulate_cohort
from typer.testing import CliRunner

import twin
from twin.cli.simulate import simulate
from twin.model.dynamic_model import DynamicTwinModel

app = typer.Typer()
app.command()(simulate)
runner = CliRunner()


def make_inputs(tmp_path):
    cohort = simulate_cohort(4, seed=2)
    model = DynamicTwinModel.from_matrices(
        cohort.schema, A=A, H=H, R=R, m0=M0, P0=P0, Qc=QC, B=B, b=b, c=C, agents=["drug"]
    )
    model.agent_names = {"drug": "Aspirin 81 MG Oral Tablet"}  # saved with the model
    model.save(tmp_path / "model")
    cohort.save(tmp_path / "cohort.nc")
    scenarios = [
        twin.Scenario(name="drug", horizon=60, step=20, interventions=[twin.Intervention("drug")]),
        twin.Scenario(name="none", horizon=60, step=20),
    ]
    twin.scenario.dump_scenarios(scenarios, tmp_path / "scenarios.yaml")
    return [str(tmp_path / "model"), str(tmp_path / "cohort.nc"), str(tmp_path / "scenarios.yaml")]


def test_simulate_writes_draws_and_summary(tmp_path):
    args = make_inputs(tmp_path)
    out = tmp_path / "result.nc"
    result = runner.invoke(app, [*args, "-o", str(out), "-n", "7", "--seed", "3", "-q"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "2 scenarios" in result.output
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["value"].dims == ("individual", "scenario", "draw", "time", "feature")
        assert ds["value"].shape == (4, 2, 7, 4, 2)
        assert {"value_mean", "value_q05", "value_q95"} <= set(ds.data_vars)
        first = ds["value"].values
    again = runner.invoke(app, [*args, "-o", str(out), "-n", "7", "--seed", "3", "-q"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    redo = runner.invoke(
        app, [*args, "-o", str(out), "-n", "7", "--seed", "3", "-q", "--overwrite"]
    )
    assert redo.exit_code == 0, redo.output
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert (ds["value"].values == first).all()  # same seed, same draws


def test_simulate_fails_clearly_on_bad_inputs(tmp_path):
    args = make_inputs(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nhorizon: 10\ninterventions:\n  - agent: aspirin\n")
    out = tmp_path / "r.nc"
    result = runner.invoke(app, [args[0], args[1], str(bad), "-o", str(out), "-q"])
    assert result.exit_code == 1 and "aspirin" in result.output
    # the code whose display name matches is suggested (names saved and loaded with the model)
    text = " ".join(result.output.split())
    assert "'aspirin' matches the display name of agent code(s) 'drug' (Aspirin 81 MG" in text
    assert not out.exists()
    missing = runner.invoke(app, [str(tmp_path / "nope"), args[1], args[2], "-o", str(out)])
    assert missing.exit_code == 1 and "no saved twin model" in missing.output
