"""``twin fit``: records → saved model → forecasts, settings from the command line and a
YAML file, clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from dynamic_sim import simulate_cohort
from typer.testing import CliRunner

import twin
from twin.cli import app
from twin.cli.fit import read_fit_config, resolve_features
from twin.datasets import synthea_demo_path
from twin.model.dynamic_model import DynamicTwinModel

runner = CliRunner()


def words(result) -> str:
    return " ".join(result.output.split())


def test_fit_from_fhir_records_then_forecast(tmp_path):
    cohort_file, model_dir = tmp_path / "cohort.nc", tmp_path / "model"
    ingest = runner.invoke(app, ["ingest", str(synthea_demo_path()), "-o", str(cohort_file), "-q"])
    assert ingest.exit_code == 0, ingest.output
    # one feature by LOINC code, one by display name (any case)
    args = ["fit", str(cohort_file), "-o", str(model_dir), "-f", "8480-6"]
    args += ["-f", "body mass index", "--no-agents", "--epochs", "40", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((model_dir / "model.json").read_text())
    model = DynamicTwinModel.load(model_dir)
    assert model.feature_names == ["8480-6", "39156-5"]
    assert model.agents == []
    # intervals calibrated on the training records by default, and the factors saved
    assert model.forecast_scale is not None and np.isfinite(model.forecast_scale).all()
    assert "calibrated to 90%" in result.output and "wrote" in result.output
    assert meta["metadata_sha256"]
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output

    fc_file = tmp_path / "fc.nc"
    fc = runner.invoke(
        app, ["forecast", str(model_dir), str(cohort_file), "-d", "90", "-o", str(fc_file)]
    )
    assert fc.exit_code == 0, fc.output
    assert "forecast 30 individuals x 1 times x 2 features" in fc.output


def test_fit_cli_trains_the_same_model_as_the_python_api(tmp_path):
    cohort = simulate_cohort(30, seed=4)
    cohort.save(tmp_path / "cohort.nc")
    config = tmp_path / "fit.yaml"
    config.write_text(
        "latent_dim: 3\n"  # overridden by --latent-dim below
        "agents: [drug]\n"
        "effect_prior_sd: 0.5\n"
        "fit: {epochs: 25, seed: 7}\n"
        "calibrate: false\n"
    )
    out = tmp_path / "model"
    args = ["fit", str(tmp_path / "cohort.nc"), "-o", str(out), "-c", str(config)]
    result = runner.invoke(app, [*args, "--latent-dim", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert "calibrated" not in result.output
    saved = DynamicTwinModel.load(out)
    assert saved.latent_dim == 2 and saved.agents == ["drug"] and saved.forecast_scale is None

    direct = DynamicTwinModel(cohort.schema, latent_dim=2, agents=["drug"], effect_prior_sd=0.5)
    direct.fit(cohort, epochs=25, seed=7, progress=False)
    for name, value in direct.module.state_dict().items():
        torch.testing.assert_close(saved.module.state_dict()[name], value, msg=name)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("agent: [drug]\n", "unknown setting 'agent' (did you mean 'agents'?)"),
        ("fit: {epoch: 3}\n", "unknown 'fit' settings ['epoch']"),
        ("calibrate: 1.5\n", "'calibrate' must be 0 (none) or a level in (0, 1)"),
        ("fit: {lr: fast}\n", "'fit.lr' must be a number, got 'fast'"),
        ("fit: {seed: 1.5}\n", "'fit.seed' must be a whole number"),
        ("latent_dim: two\n", "'latent_dim' must be a number"),
        ("transforms: [y1]\n", "'transforms' must be a mapping"),
        ("standardize: 1\n", "'standardize' must be true or false"),
        ("timescales: [1, 2, 3]\n", "'timescales' must be two numbers"),
        ("- latent_dim\n", "expected a mapping of settings"),
        ("agents: drug\n", "'agents' must be a list"),
        ("latent_dim: [2\n", "not valid YAML"),
    ],
)
def test_fit_config_errors_name_the_file_and_setting(tmp_path, config, message):
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        read_fit_config(path)
    assert message in str(info.value) and "bad.yaml" in str(info.value)


def test_fit_config_values_are_converted(tmp_path):
    path = tmp_path / "fit.yaml"
    path.write_text(
        "agents: [316049, '03']\nfit: {lr: 1e-3, epochs: 10.0}\ncalibrate: 0\n"
        "effect_prior_sd: {'*': 1}\ntimescales: [1, 300]\n"
    )
    config = read_fit_config(path)
    assert config["agents"] == ["316049", "03"]  # codes as text
    assert config["fit"] == {"lr": 0.001, "epochs": 10}  # YAML reads 1e-3 as text
    assert isinstance(config["fit"]["epochs"], int)
    assert config["calibrate"] is None  # 0: no calibration, as on the command line
    assert config["effect_prior_sd"] == {"*": 1.0} and config["timescales"] == (1.0, 300.0)


def test_fit_refuses_bad_input_without_writing(tmp_path):
    cohort = simulate_cohort(6, seed=1)
    cohort.save(tmp_path / "cohort.nc")
    out = tmp_path / "model"
    base = ["fit", str(tmp_path / "cohort.nc"), "-o", str(out), "-q", "--epochs", "2"]
    unknown = runner.invoke(app, [*base, "-f", "y11"])
    assert unknown.exit_code == 1
    text = words(unknown)
    assert "no longitudinal feature 'y11' (by name or display name); close: ['y1']" in text
    bad_transform = runner.invoke(app, [*base, "-t", "y1"])
    assert bad_transform.exit_code == 1 and "FEATURE=KIND" in bad_transform.output
    missing = runner.invoke(app, ["fit", str(tmp_path / "nope.nc"), "-o", str(out)])
    assert missing.exit_code == 1
    config = runner.invoke(app, [*base, "-c", str(tmp_path / "nope.yaml")])
    assert config.exit_code == 1 and "no such config file" in config.output
    both = runner.invoke(app, [*base, "-a", "drug", "--no-agents"])
    assert both.exit_code == 2 and "not both" in both.output
    twice = runner.invoke(app, [*base, "-f", "y1", "-f", "y1"])
    assert twice.exit_code == 1 and "'y1' and 'y1' are the same feature" in words(twice)
    assert not out.exists()


def test_display_names_resolve_only_when_unambiguous():
    rows = [{"individual": "a", "time": 0.0, "feature": f, "value": 1.0} for f in ("y1", "y2")]
    cohort = twin.Cohort.from_tables(
        longitudinal={"labs": pd.DataFrame(rows)},
        feature_info={"labs": {"y1": {"display": "Glucose"}, "y2": {"display": "Glucose"}}},
    )
    assert resolve_features(cohort.schema, None, ["y1"]) == ["y1"]
    with pytest.raises(KeyError, match="display name of"):
        resolve_features(cohort.schema, None, ["glucose"])
    rows = [{"individual": "a", "time": 0.0, "feature": "y1", "value": 1.0}]
    one = twin.Cohort.from_tables(
        longitudinal={"labs": pd.DataFrame(rows)},
        feature_info={"labs": {"y1": {"display": "Glucose"}}},
    )
    assert resolve_features(one.schema, None, ["GLUCOSE"]) == ["y1"]
    with pytest.raises(KeyError, match="'y1' and 'glucose' are the same feature 'y1'"):
        resolve_features(one.schema, None, ["y1", "glucose"])
