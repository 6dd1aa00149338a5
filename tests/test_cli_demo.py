"""`twin demo` never overwrites a folder it did not create."""

from __future__ import annotations

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
    missing = CliRunner().invoke(app, ["info", str(tmp_path / "none.nc")])
    assert missing.exit_code == 2 and "no cohort file" in missing.output
