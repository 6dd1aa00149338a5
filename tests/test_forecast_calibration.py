"""Forecast calibration of a DynamicTwinModel: held-out last readings set the interval scale."""

from __future__ import annotations

import numpy as np
import pytest
from dynamic_sim import M0, P0, QC, A, B, C, H, R, b, simulate_cohort

from twin.cohort.window import observations_before
from twin.model.dynamic_model import DynamicTwinModel
from twin.model.forecast_calibration import held_out_last_readings


def too_noisy_model(schema) -> DynamicTwinModel:
    """The true system, except that it believes the measurement noise is 4x larger (sd)."""
    return DynamicTwinModel.from_matrices(
        schema, A=A, H=H, R=16 * np.asarray(R), m0=M0, P0=P0, Qc=QC, B=B, b=b, c=C,
        agents=["drug"],
    )  # fmt: skip


def last_reading_coverage(model, cohort, feature: str, calibrated: bool) -> tuple[float, float]:
    """Coverage and mean width of the 90 % forecast interval of each last reading."""
    held = held_out_last_readings(cohort, "labs", feature, min_history=2)
    sub = cohort.select(list(held.index))
    cut = held["t"].to_numpy()
    fc = model.instantiate(observations_before(sub, cut)).forecast(
        cut[:, None], calibrated=calibrated
    )
    lo, hi = fc[f"{feature}_q05"].values[:, 0], fc[f"{feature}_q95"].values[:, 0]
    y = held["y"].to_numpy()
    return float(np.mean((y >= lo) & (y <= hi))), float(np.mean(hi - lo))


@pytest.fixture(scope="module")
def calibrated():
    calibration = simulate_cohort(200, seed=11)
    model = too_noisy_model(calibration.schema)
    table = model.calibrate_forecast(calibration)
    return model, table


def test_factors_shrink_too_wide_intervals_to_nominal_coverage_on_new_individuals(calibrated):
    model, table = calibrated
    assert list(table.index) == ["y1", "y2"]
    assert (table["n"] > 100).all()
    assert (table["factor"] < 0.8).all()
    assert (table["coverage_before"] > 0.97).all()
    assert table["coverage_after"].between(0.85, 0.95).all()
    held_out = simulate_cohort(200, seed=12)
    for feature in ("y1", "y2"):
        cov_raw, width_raw = last_reading_coverage(model, held_out, feature, calibrated=False)
        cov, width = last_reading_coverage(model, held_out, feature, calibrated=True)
        assert cov_raw > 0.97
        assert 0.82 <= cov <= 0.96, (feature, cov)
        assert width < 0.8 * width_raw


def test_calibration_leaves_means_and_noise_free_forecasts_alone(calibrated):
    model, _ = calibrated
    cohort = simulate_cohort(6, seed=13)
    twins = model.instantiate(cohort)
    times = np.array([20.0, 60.0])
    on = twins.forecast(times, relative_to="last")
    off = twins.forecast(times, relative_to="last", calibrated=False)
    np.testing.assert_allclose(on["y1"].values, off["y1"].values)
    assert (on["y1_sd"].values < off["y1_sd"].values).all()
    assert on.attrs["calibrated"] == 1 and off.attrs["calibrated"] == 0
    signal = twins.forecast(times, relative_to="last", noise=False)
    assert signal.attrs["calibrated"] == 0
    assert "forecast sd calibrated" in repr(model)


def test_calibration_is_saved_and_reset_by_refitting(calibrated, tmp_path):
    model, table = calibrated
    loaded = DynamicTwinModel.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.forecast_scale, table["factor"].to_numpy())
    cohort = simulate_cohort(40, seed=14)
    refit = DynamicTwinModel(cohort.schema, ["labs"], latent_dim=2, agents=["drug"])
    refit.forecast_scale = np.array([0.5, 0.5])
    refit.fit(cohort, seed=0, progress=False, epochs=3)
    assert refit.forecast_scale is None


def test_level_outside_the_unit_interval_is_refused(calibrated):
    model, _ = calibrated
    with pytest.raises(ValueError, match="level"):
        model.calibrate_forecast(simulate_cohort(5, seed=1), level=1.5)
