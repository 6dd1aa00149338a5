"""`twin demo` never overwrites a folder it did not create."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from twin.cli import app
from twin.cli.demo import MARKER


def test_demo_refuses_a_foreign_non_empty_folder(tmp_path) -> None:
    (tmp_path / "results.csv").write_text("precious")
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "not from 'twin demo'" in result.output
    assert (tmp_path / "results.csv").read_text() == "precious"


def test_demo_output_folder_is_reused_only_when_marked(tmp_path) -> None:
    from rich.console import Console

    from twin.cli.demo import prepare_output

    out = tmp_path / "demo"
    prepare_output(out, Console(quiet=True))
    (out / "old.nc").write_text("from an earlier demo")
    prepare_output(out, Console(quiet=True))
    assert (out / MARKER).exists() and not (out / "old.nc").exists()


def test_info_command_describes_a_saved_cohort(tmp_path) -> None:
    from twin.datasets import load_rosmap

    path = load_rosmap().select(slice(0, 5)).save(tmp_path / "c.nc")
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "5 individuals" in result.output and "mrna" in result.output
    # brackets in messages (units such as [mL/min]) are printed, not taken for markup
    missing = CliRunner().invoke(app, ["info", str(tmp_path / "none[mL/min].nc")])
    assert missing.exit_code == 1 and "no cohort file" in missing.output
    assert "none[mL/min].nc" in missing.output
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    folder = CliRunner().invoke(app, ["info", str(tmp_path / "model")])
    assert folder.exit_code == 1 and "is a folder, not a cohort file" in folder.output
    assert "saved model" in folder.output and "Errno" not in folder.output


def test_demo_longitudinal_step_forecasts_updates_and_simulates(tmp_path) -> None:
    """The demo's third step on the shipped trial excerpt: filtering sharpens, arms simulate."""
    import io

    import xarray as xr
    from rich.console import Console

    from twin.cli.demo import longitudinal_step

    console = Console(file=io.StringIO(), width=120)
    summary = longitudinal_step(tmp_path, console, epochs=60, seed=0)
    stages = summary["forecast_stages"]
    assert [s["readings"] for s in stages] == [2, 3, 4]
    widths = [s["width90"] for s in stages]
    assert widths[0] > widths[1] > widths[2] > 0  # each new reading narrows the interval
    assert all(s["mae"] > 0 and s["mae_last_value"] > 0 for s in stages)
    res = xr.open_dataset(tmp_path / "lesion_scenarios.nc", engine="h5netcdf")
    assert list(res["scenario"].values) == ["Study_4_Arm_1", "Study_4_Arm_2"]
    assert res.sizes["draw"] == 200 and res.sizes["individual"] == 85
    assert (tmp_path / "lesion_scenarios.png").stat().st_size > 10_000
    assert "forecast as readings arrive" in console.file.getvalue()
    # the saved model, baseline cohort and scenario YAML reproduce it from the command line
    out = tmp_path / "lesion_cli.nc"
    cli = CliRunner().invoke(
        app,
        [
            "simulate",
            str(tmp_path / "lesion_model"),
            str(tmp_path / "lesion_baseline.nc"),
            str(tmp_path / "lesion_arms.yaml"),
            "-o",
            str(out),
            "--origin",
            "reference",
            "--seed",
            "0",
            "-q",
        ],
    )
    assert cli.exit_code == 0, cli.output
    assert (
        "twin simulate" in console.file.getvalue() and "lesion_arms.yaml" in console.file.getvalue()
    )
    again = xr.open_dataset(out, engine="h5netcdf")
    assert list(again["scenario"].values) == list(res["scenario"].values)
    np.testing.assert_allclose(again["value"].values, res["value"].values, rtol=1e-5)
