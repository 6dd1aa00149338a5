"""Forecasts out as FHIR R4 Observations (twin.export) and ``twin forecast``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from dynamic_sim import M0, P0, QC, A, B, C, H, R, b, dated_cohort, simulate_cohort
from fhir.resources.R4B.bundle import Bundle
from typer.testing import CliRunner

from twin.cli import app
from twin.export import forecast_bundle, write_bundle
from twin.model.dynamic_model import DynamicTwinModel


def named_model(cohort):
    return DynamicTwinModel.from_matrices(
        cohort.schema, A=A, H=H, R=R, m0=M0, P0=P0, Qc=QC, B=B, b=b, c=C, agents=["drug"]
    )


@pytest.fixture(scope="module")
def dated():
    base = simulate_cohort(5, seed=4)
    last = base.to_long("labs").groupby("individual")["t"].max()
    return dated_cohort(base, slice(None), deceased={"p003": float(last["p003"]) + 15.0})


def test_bundle_holds_one_valid_observation_per_finite_forecast(dated, tmp_path):
    twins = named_model(dated).instantiate(dated)
    with pytest.warns(UserWarning, match="recorded death"):
        fc = twins.forecast([30.0, 90.0], relative_to="last")
    bundle = forecast_bundle(twins, fc)
    parsed = Bundle.model_validate(bundle)  # a valid R4 Bundle
    assert parsed.type == "collection"
    obs = [e["resource"] for e in bundle["entry"]]
    # 5 individuals x 2 times x 2 features, less p003's two times after its death
    assert len(obs) == 5 * 2 * 2 - 2 * 2
    one = next(
        o
        for o in obs
        if o["subject"]["reference"] == "Patient/p000" and o["code"]["text"] == "Glucose"
    )
    when = pd.Timestamp(one["effectiveDateTime"]).tz_convert(None)
    k = int(np.nonzero(fc["date"].sel(individual="p000").values == when.to_datetime64())[0][0])
    sel = fc.sel(individual="p000").isel(time=k)
    assert one["status"] == "preliminary" and "not measured" in one["method"]["text"]
    assert one["valueQuantity"]["value"] == pytest.approx(float(sel["y1"]), abs=1e-6)
    assert one["valueQuantity"]["unit"] == "mmol/L"
    assert one["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    rr = one["referenceRange"][0]
    assert rr["low"]["value"] == pytest.approx(float(sel["y1_q05"]), abs=1e-6)
    assert rr["high"]["value"] == pytest.approx(float(sel["y1_q95"]), abs=1e-6)
    assert "90% predictive interval" in rr["text"]
    assert one["code"]["coding"][0] == {"code": "y1", "display": "Glucose"}
    # the dead individual's later forecasts are left out, the earlier ones kept
    p3 = [o for o in obs if o["subject"]["reference"] == "Patient/p003"]
    death = pd.Timestamp("2020-01-01") + pd.Timedelta(days=float(twins["p003"].death_time[0]))
    assert all(pd.Timestamp(o["effectiveDateTime"]).tz_convert(None) <= death for o in p3)
    # a forecast made through the death (after_death="keep") exports the same entries
    kept = twins.forecast([30.0, 90.0], relative_to="last", after_death="keep")
    assert np.isfinite(kept["y1"].sel(individual="p003").values).all()
    assert forecast_bundle(twins, kept) == bundle
    # same forecast, same ids; written atomically, not over an existing file
    assert forecast_bundle(twins, fc) == bundle
    path = write_bundle(bundle, tmp_path / "fc.json")
    assert json.loads(path.read_text()) == bundle
    with pytest.raises(FileExistsError):
        write_bundle(bundle, path)


def test_bundle_needs_dates_and_the_interval_quantiles(dated):
    plain = simulate_cohort(3, seed=1)
    twins = named_model(plain).instantiate(plain)
    with pytest.raises(ValueError, match="no calendar dates"):
        forecast_bundle(twins, twins.forecast([10.0], relative_to="last"))
    twins = named_model(dated).instantiate(dated)
    fc = twins.forecast([10.0], relative_to="last", quantiles=(0.25, 0.75))
    with pytest.raises(ValueError, match=r"quantiles=\(0.05, 0.5, 0.95\)"):
        forecast_bundle(twins, fc)
    assert len(forecast_bundle(twins, fc, level=0.5)["entry"]) == 10
    twice = twins.forecast([10.0, 10.0], relative_to="last")
    entries = forecast_bundle(twins, twice)["entry"]
    assert len({e["fullUrl"] for e in entries}) == len(entries) == 10  # one per date
    with pytest.warns(UserWarning, match="recorded death"):
        gone = twins["p003"].forecast([400.0], relative_to="last")
    assert "entry" not in forecast_bundle(twins["p003"], gone)  # FHIR JSON: no empty arrays


def test_cli_forecast_writes_netcdf_and_fhir(dated, tmp_path):
    import xarray as xr

    named_model(dated).save(tmp_path / "model")
    dated.save(tmp_path / "cohort.nc")
    out, fhir = tmp_path / "fc.nc", tmp_path / "fc.json"
    args = ["forecast", str(tmp_path / "model"), str(tmp_path / "cohort.nc"), "-d", "90"]
    result = CliRunner().invoke(app, [*args, "-d", "30", "-o", str(out), "--fhir", str(fhir)])
    assert result.exit_code == 0, result.output
    assert "recorded death" in result.output and "16 predicted Observations" in result.output
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["y1"].dims == ("individual", "time") and list(ds["time"].values) == [30, 90]
        assert {"y1_sd", "y1_q05", "y1_q95"} <= set(ds.data_vars)
    assert len(json.loads(fhir.read_text())["entry"]) == 16
    again = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "other.nc"), "--fhir", str(fhir)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    bad = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "x.nc"), "--level", "1.5"])
    assert bad.exit_code == 1 and "--level" in bad.output
