"""Saved longitudinal twins: ``DynamicTwins.save`` / ``load`` and ``twin update``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import typer
import xarray as xr
from dynamic_sim import M0, P0, QC, A, B, C, H, R, b, dated_cohort, simulate_cohort
from typer.testing import CliRunner

import twin
from twin.cli.forecast import forecast
from twin.cli.update import update
from twin.dynamic_twins_file import is_twins_file
from twin.model.dynamic_model import DynamicTwinModel

runner = CliRunner()


def _app(command) -> typer.Typer:
    app = typer.Typer()
    app.command()(command)
    return app


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(8, seed=3)


def _model(cohort, scale: float = 1.0) -> DynamicTwinModel:
    return DynamicTwinModel.from_matrices(
        cohort.schema, A=A * scale, H=H, R=R, m0=M0, P0=P0, Qc=QC, B=B, b=b, c=C, agents=["drug"]
    )


@pytest.fixture(scope="module")
def model(cohort):
    return _model(cohort)


def _with_undated_death(cohort, who: str):
    """The calendar cohort with ``who`` flagged dead (``deceased_flag`` 1) and no date."""
    dated = dated_cohort(cohort, slice(None))
    long = dated.to_long("labs")[["individual", "time", "feature", "value"]]
    ids = list(dated.individuals)
    covariates = pd.DataFrame(
        {"deceased": pd.to_datetime([pd.NaT] * len(ids)), "deceased_flag": 0.0}, index=ids
    )
    covariates.loc[who, "deceased_flag"] = 1.0
    return twin.Cohort.from_tables(
        longitudinal={"labs": long},
        interventions=dated.interventions[["individual", "agent", "start", "dose"]],
        covariates=covariates,
        feature_info={"labs": {"y1": {"unit": "mmol/L"}, "y2": {"unit": "mmol/L"}}},
    )


def _assert_same_twins(a, b) -> None:
    assert torch.equal(a.mean, b.mean) and torch.equal(a.cov, b.cov)
    assert torch.equal(a.prior_mean, b.prior_mean) and torch.equal(a.prior_cov, b.prior_cov)
    np.testing.assert_array_equal(a.time, b.time)
    np.testing.assert_array_equal(a.prior_time, b.prior_time)
    np.testing.assert_array_equal(a.death_time, b.death_time)
    np.testing.assert_array_equal(a.reference_time, b.reference_time)
    assert list(a.individuals) == list(b.individuals)
    pd.testing.assert_frame_equal(a.observations(), b.observations())
    pd.testing.assert_frame_equal(a.interventions, b.interventions)


def test_saved_twins_load_update_and_forecast_as_the_originals(cohort, model, tmp_path):
    early, late = (
        dated_cohort(cohort, slice(0, 3), {"p001": 400}),
        dated_cohort(cohort, slice(3, None)),
    )
    twins = model.instantiate(early)
    assert len(twins.interventions) > 0 and np.isfinite(twins.death_time).sum() == 1
    path = twins.save(tmp_path / "twins.nc")
    assert is_twins_file(path) and not is_twins_file(tmp_path / "absent.nc")
    loaded = twin.DynamicTwins.load(path, model)
    _assert_same_twins(loaded, twins)
    # the loaded twins go on exactly as the originals, and as the whole record
    _assert_same_twins(loaded.update(late), twins.update(late))
    full = model.instantiate(dated_cohort(cohort, slice(None), {"p001": 400}))
    np.testing.assert_allclose(loaded.update(late).mean, full.mean, rtol=1e-8, atol=1e-9)
    with pytest.warns(UserWarning, match="recorded death"):
        a = loaded.forecast([30.0, 500.0], relative_to="last")
    with pytest.warns(UserWarning, match="recorded death"):
        b_ = twins.forecast([30.0, 500.0], relative_to="last")
    assert a.equals(b_) and np.isnan(a["y1"].values[1, 1])  # cut after the death, as before
    # smoothing past times uses the saved prior and history
    past = loaded.forecast([5.0], relative_to="reference")
    np.testing.assert_array_equal(past["y1"].values, twins.forecast([5.0])["y1"].values)


def test_a_selection_an_undated_death_and_numeric_times_survive_the_file(cohort, model, tmp_path):
    twins = model.instantiate(_with_undated_death(cohort, "p002"))
    assert np.isneginf(twins.death_time[2])
    some = twins[["p002", "p005"]]
    _assert_same_twins(twin.DynamicTwins.load(some.save(tmp_path / "some.nc"), model), some)
    plain = model.instantiate(cohort)  # days since reference: no calendar, no death
    again = twin.DynamicTwins.load(plain.save(tmp_path / "plain.nc"), model)
    _assert_same_twins(again, plain)
    assert pd.isna(again.reference_time).all()


def test_twins_load_only_under_the_model_that_made_them(cohort, model, tmp_path):
    path = model.instantiate(cohort).save(tmp_path / "twins.nc")
    model.save(tmp_path / "model")
    reloaded = DynamicTwinModel.load(tmp_path / "model")  # same parameters: accepted
    _assert_same_twins(twin.DynamicTwins.load(path, reloaded), model.instantiate(cohort))
    with pytest.raises(ValueError, match="made by another model"):
        twin.DynamicTwins.load(path, _model(cohort, scale=1.01))


def test_bad_twins_files_are_named_and_nothing_is_overwritten(cohort, model, tmp_path):
    twins = model.instantiate(cohort)
    path = twins.save(tmp_path / "twins.nc")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        twins[["p000"]].save(path)
    assert path.read_bytes() == before
    twins[["p000"]].save(path, overwrite=True)
    assert len(twin.DynamicTwins.load(path, model)) == 1
    cohort.save(tmp_path / "cohort.nc")
    with pytest.raises(ValueError, match="cohort.nc: not a saved DynamicTwins file.*cohort file"):
        twin.DynamicTwins.load(tmp_path / "cohort.nc", model)
    with pytest.raises(FileNotFoundError, match="no twins file"):
        twin.DynamicTwins.load(tmp_path / "missing.nc", model)
    with pytest.raises(ValueError, match="is a folder"):
        twin.DynamicTwins.load(tmp_path, model)
    (tmp_path / "junk.nc").write_text("not netcdf")
    with pytest.raises(ValueError, match="junk.nc: not a readable NetCDF twins file"):
        twin.DynamicTwins.load(tmp_path / "junk.nc", model)


def test_twin_update_keeps_twins_between_exports(cohort, tmp_path):
    model = _model(dated_cohort(cohort, slice(None)))  # the calendar cohort's schema
    model.save(tmp_path / "model")
    dated_cohort(cohort, slice(0, 3)).save(tmp_path / "early.nc")
    dated_cohort(cohort, slice(3, None)).save(tmp_path / "late.nc")
    dated_cohort(cohort, slice(None)).save(tmp_path / "full.nc")
    app, m = _app(update), str(tmp_path / "model")
    twins_nc = tmp_path / "twins.nc"
    first = runner.invoke(app, [m, str(tmp_path / "early.nc"), "-o", str(twins_nc)])
    assert first.exit_code == 0, first.output
    assert "0 new observations; wrote" in first.output
    n_early = twin.DynamicTwins.load(twins_nc, model).history.n_observations
    # the later export, read alone, refines the saved twins in place
    again = runner.invoke(
        app, [m, str(twins_nc), str(tmp_path / "late.nc"), "-o", str(twins_nc), "--overwrite"]
    )
    assert again.exit_code == 0, again.output
    updated = twin.DynamicTwins.load(twins_nc, model)
    full = model.instantiate(twin.Cohort.load(tmp_path / "full.nc"))
    added = updated.history.n_observations - n_early
    assert added > 0 and f"{added} new observations from 1 file(s)" in again.output
    np.testing.assert_allclose(updated.mean, full.mean, rtol=1e-8, atol=1e-9)
    np.testing.assert_array_equal(updated.time, full.time)
    # twin forecast reads the twins file as it reads a cohort
    fc_path = tmp_path / "fc.nc"
    done = runner.invoke(_app(forecast), [m, str(twins_nc), "-d", "30", "-o", str(fc_path)])
    assert done.exit_code == 0, done.output
    with xr.open_dataset(fc_path, engine="h5netcdf") as ds:
        expected = full.forecast([30.0], relative_to="last")
        np.testing.assert_allclose(ds["y1"].values, expected["y1"].values, rtol=1e-10)
    # refusals: an existing output, individuals that are not twins (file named)
    kept = twins_nc.read_bytes()
    refused = runner.invoke(app, [m, str(twins_nc), "-o", str(twins_nc)])
    assert refused.exit_code == 2 and "exists" in refused.output
    others = simulate_cohort(2, seed=9).data
    others = others.assign_coords(individual=["q000", "q001"])
    twin.Cohort(others).save(tmp_path / "others.nc")
    bad = runner.invoke(
        app, [m, str(twins_nc), str(tmp_path / "others.nc"), "-o", str(tmp_path / "x.nc")]
    )
    assert bad.exit_code == 1 and "others.nc" in bad.output, bad.output
    assert twins_nc.read_bytes() == kept and not (tmp_path / "x.nc").exists()
    swapped = runner.invoke(app, [m, str(twins_nc), str(twins_nc), "-o", str(tmp_path / "x.nc")])
    assert swapped.exit_code == 1 and "is a twins file" in swapped.output
