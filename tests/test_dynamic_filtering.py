"""Exact filtering through the DynamicTwinModel / DynamicTwins API against a NumPy Kalman filter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dynamic_sim import M0, P0, QC, A, B, C, H, R, b, dated_cohort, discretize, simulate_cohort

from twin.cohort.window import first_observations, observations_before
from twin.model.dynamic_model import DynamicTwinModel


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(8, seed=3)


@pytest.fixture(scope="module")
def model(cohort):
    return DynamicTwinModel.from_matrices(
        cohort.schema, A=A, H=H, R=R, m0=M0, P0=P0, Qc=QC, B=B, b=b, c=C, agents=["drug"]
    )


def numpy_filter(cohort, individual: str):
    """Textbook covariance-form filter of one individual, splitting gaps at the drug start."""
    i = list(cohort.individuals).index(individual)
    t = cohort.times()[i]
    y = cohort.values("labs")[i]
    mask = cohort.mask("labs")[i]
    keep = mask.any(-1)
    t, y, mask = t[keep], y[keep], mask[keep]
    iv = cohort.interventions
    starts = iv.loc[iv["individual"] == individual, "start_t"].to_numpy()
    start = starts[0] if len(starts) else np.inf
    m, P = M0.copy(), P0.copy()
    ll = 0.0
    for k in range(len(t)):
        if k > 0:
            cuts = [t[k - 1], *([start] if t[k - 1] < start < t[k] else []), t[k]]
            for a, c in zip(cuts[:-1], cuts[1:], strict=True):
                F, Q, G = discretize(A, QC, c - a)
                u = 1.0 if a >= start else 0.0
                m = F @ m + G @ (B[:, 0] * u + b)
                P = F @ P @ F.T + Q
        o = mask[k]
        Ho, yo = H[o], y[k][o] - C[o]
        S = Ho @ P @ Ho.T + np.diag(R[o])
        K = P @ Ho.T @ np.linalg.inv(S)
        r = yo - Ho @ m
        ll += -0.5 * (
            o.sum() * np.log(2 * np.pi) + np.linalg.slogdet(S)[1] + r @ np.linalg.solve(S, r)
        )
        m = m + K @ r
        P = (np.eye(2) - K @ Ho) @ P
    return m, P, ll, t[-1]


def test_instantiate_matches_a_numpy_kalman_filter(cohort, model):
    twins = model.instantiate(cohort)
    lls = model.log_likelihood(cohort)
    treated = set(cohort.interventions["individual"])
    assert treated and treated != set(cohort.individuals)  # both kinds are checked
    for i, pid in enumerate(cohort.individuals):
        m, P, ll, t_last = numpy_filter(cohort, pid)
        np.testing.assert_allclose(twins.mean[i].numpy(), m, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(twins.cov[i].numpy(), P, rtol=1e-8, atol=1e-10)
        assert twins.time[i] == t_last
        assert lls[pid] == pytest.approx(ll, rel=1e-9)


def test_update_with_no_new_data_is_a_no_op(cohort, model):
    twins = model.instantiate(cohort)
    again = twins.update(cohort)  # same record: nothing after the current times
    assert torch.equal(again.mean, twins.mean)
    assert torch.equal(again.cov, twins.cov)
    np.testing.assert_array_equal(again.time, twins.time)
    assert again.history.n_observations == twins.history.n_observations


def test_sequential_updates_equal_filtering_the_whole_record(cohort, model):
    full = model.instantiate(cohort)
    step = model.instantiate(first_observations(cohort, 2, "labs"))
    assert (step.time < full.time).all()
    step = step.update(first_observations(cohort, 4, "labs")).update(cohort)
    np.testing.assert_allclose(step.mean.numpy(), full.mean.numpy(), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(step.cov.numpy(), full.cov.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(step.time, full.time)
    assert step.history.n_observations == full.history.n_observations


def test_update_of_twins_with_no_reading_yet_equals_instantiating_the_record(cohort, model):
    """A twin made before its first reading holds the initial-state prior, which applies at
    the first observation: updating it must not carry the prior from day 0 to there."""
    import twin

    long = cohort.to_long("labs").drop(columns="time").rename(columns={"t": "time"})
    offset = long["individual"].str[1:].astype(int) % 3 * 40.0  # first readings at 0, 40, 80
    long = long.assign(time=long["time"] + offset)[["individual", "time", "feature", "value"]]
    iv = cohort.interventions[["individual", "agent", "start_t", "dose"]]
    units = {"labs": {"y1": {"unit": "mmol/L"}, "y2": {"unit": "mmol/L"}}}
    cohort = twin.Cohort.from_tables(
        longitudinal={"labs": long}, interventions=iv, feature_info=units
    )
    first = cohort.to_long("labs").groupby("individual")["t"].min()
    early = model.instantiate(observations_before(cohort, 41.0))
    fresh = ~early.history.mask.any(axis=(1, 2))
    assert 0 < fresh.sum() < len(fresh)  # both kinds of twins
    assert (first[early.individuals[fresh]] > 0).all()  # their first reading is after day 0
    step, full = early.update(cohort), model.instantiate(cohort)
    np.testing.assert_allclose(step.mean.numpy(), full.mean.numpy(), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(step.cov.numpy(), full.cov.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(step.time, full.time)
    np.testing.assert_array_equal(step.prior_time, full.prior_time)
    past = [float(first.max()) + 5.0]  # smoothed from the prior at each first reading
    smoothed = step.forecast(past)["y1"].values
    assert np.isfinite(smoothed).all()
    np.testing.assert_allclose(smoothed, full.forecast(past)["y1"].values, rtol=1e-8)


def test_update_from_a_later_export_with_its_own_reference_time(cohort, model):
    """A new export read alone starts its clock at its own first record; ``update`` moves it
    onto the twins' clock, so filtering the two parts equals filtering the whole record."""
    full = model.instantiate(dated_cohort(cohort, slice(None)))
    early, late = dated_cohort(cohort, slice(0, 3)), dated_cohort(cohort, slice(3, None))
    assert (late.reference_time > early.reference_time).all()  # the two clocks differ
    step = model.instantiate(early).update(late)
    np.testing.assert_allclose(step.mean.numpy(), full.mean.numpy(), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(step.cov.numpy(), full.cov.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(step.time, full.time)
    assert step.history.n_observations == full.history.n_observations
    assert len(step.interventions) == len(full.interventions)  # the repeated drug counted once
    # moving the clock keeps every date: the new cohort's own dates are unchanged
    moved = late.with_reference_time(early.reference_time)
    np.testing.assert_array_equal(moved.data["visit_time"].values, late.data["visit_time"].values)
    np.testing.assert_allclose(
        moved.times() - late.times(),
        (late.reference_time - early.reference_time).dt.days.to_numpy()[:, None] + 0 * late.times(),
    )
    # numeric times cannot be matched with calendar dates
    with pytest.raises(ValueError, match="calendar dates"):
        model.instantiate(cohort).update(late)
    with pytest.raises(ValueError, match="no calendar"):
        cohort.with_reference_time(early.reference_time)


def test_overlapping_exports_with_times_of_day_count_each_reading_and_dose_once(cohort, model):
    """Exports read alone have their own reference times; moved onto the twins' clock, a
    reading or a drug start seen in both must match the first copy (not differ in the last
    bits), and a course that has ended since takes the later export's end."""
    import pandas as pd

    import twin

    rng = np.random.default_rng(0)
    day0 = pd.Timestamp("2020-01-01 08:13:07")
    long = cohort.to_long("labs")
    when = day0 + pd.to_timedelta(long["t"] + rng.uniform(0, 0.9, len(long)), unit="D")
    table = pd.DataFrame(
        {"individual": long["individual"], "time": when, "feature": long["feature"],
         "value": long["value"].astype(float)}
    )  # fmt: skip
    iv = cohort.interventions
    starts = day0 + pd.to_timedelta(iv["start_t"] + 0.37, unit="D")
    course = pd.DataFrame({"individual": iv["individual"], "agent": iv["agent"], "start": starts})
    cut = day0 + pd.Timedelta(days=100)
    ended = course.assign(end=cut + pd.Timedelta(days=20))  # after the first export
    units = {"labs": {"y1": {"unit": "mmol/L"}, "y2": {"unit": "mmol/L"}}}

    def export(rows, courses):
        return twin.Cohort.from_tables(
            longitudinal={"labs": rows}, interventions=courses, feature_info=units
        )

    early = export(table[table["time"] < cut], course)  # the drug still going
    late = export(table[table["time"] >= cut - pd.Timedelta(days=30)], ended)  # overlaps
    full = model.instantiate(export(table, ended))
    step = model.instantiate(early).update(late)
    assert step.history.n_observations == full.history.n_observations
    assert len(step.interventions) == len(full.interventions) == len(iv)
    assert step.interventions["end"].notna().all()  # the later export's version
    np.testing.assert_allclose(step.mean.numpy(), full.mean.numpy(), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(step.cov.numpy(), full.cov.numpy(), rtol=1e-8, atol=1e-10)


def test_update_refines_only_the_given_individuals(cohort, model):
    early = model.instantiate(first_observations(cohort, 2, "labs"))
    some = cohort.select(list(cohort.individuals[:3]))
    upd = early.update(some)
    assert not torch.equal(upd.mean[:3], early.mean[:3])
    assert torch.equal(upd.mean[3:], early.mean[3:])
    with pytest.raises(KeyError, match="not among the twins"):
        early.update(simulate_cohort(2, seed=99).select([0]).data.pipe(_rename))


def _rename(ds):
    import twin

    return twin.Cohort(ds.assign_coords(individual=["stranger"]))


def test_forecast_future_is_exact_and_past_is_smoothed_consistently(cohort, model):
    history = observations_before(cohort, 100.0)
    twins = model.instantiate(history)
    future = twins.time[:, None] + np.array([[10.0, 50.0]])
    fc = twins.forecast(future)
    # the same future times, asked together with a past time, go through the smoother
    both = twins.forecast(np.concatenate([np.zeros((len(twins), 1)), future], axis=1))
    for name in ("y1", "y2"):
        np.testing.assert_allclose(both[name].values[:, 1:], fc[name].values, rtol=1e-8)
        np.testing.assert_allclose(
            both[f"{name}_sd"].values[:, 1:], fc[f"{name}_sd"].values, rtol=1e-7
        )
    # the exact one-gap prediction from the current posterior (no drug change inside)
    i = 0
    dt = 10.0
    F, Q, G = discretize(A, QC, dt)
    treated = cohort.individuals[i] in set(cohort.interventions["individual"])
    u = 1.0 if treated and twins.time[i] >= 30.0 else 0.0
    m = F @ twins.mean[i].numpy() + G @ (B[:, 0] * u + b)
    P = F @ twins.cov[i].numpy() @ F.T + Q
    if treated and twins.time[i] < 30.0 < twins.time[i] + dt:
        pytest.skip("drug starts inside the gap")
    mean = H @ m + C
    sd = np.sqrt(np.diag(H @ P @ H.T) + R)
    assert fc["y1"].values[i, 0] == pytest.approx(mean[0], rel=1e-9)
    assert fc["y2_sd"].values[i, 0] == pytest.approx(sd[1], rel=1e-9)
    # 90 % interval of a Gaussian feature: mean -+ 1.645 sd
    assert fc["y1_q95"].values[i, 0] == pytest.approx(mean[0] + 1.6448536 * sd[0], rel=1e-6)
    # relative_to="last" is the same request
    rel = twins.forecast([10.0, 50.0], relative_to="last")
    np.testing.assert_allclose(rel["y1"].values, fc["y1"].values)


def test_smoothed_history_interpolates_observations(cohort, model):
    twins = model.instantiate(cohort)
    i = 0
    obs = twins.observations()
    obs = obs[(obs["individual"] == cohort.individuals[i]) & (obs["feature"] == "y1")]
    times = obs["t"].to_numpy()
    fc = twins[[i]].forecast(times, noise=False)
    # the smoothed signal lies within the noise of the observations it interpolates
    assert np.all(np.abs(fc["y1"].values[0] - obs["value"].to_numpy()) < 4 * np.sqrt(R[0]))
    with pytest.warns(UserWarning, match="before the first observation"):
        before = twins[[i]].forecast([times[0] - 5.0])
    assert np.isnan(before["y1"].values).all()  # before the first observation: no prior there


def test_forecast_at_calendar_dates_equals_forecast_at_the_same_days(cohort, model):
    import pandas as pd

    dated = dated_cohort(cohort, slice(None))
    twins = model.instantiate(dated)
    dates = pd.to_datetime(["2020-12-01", "2021-06-01"])
    by_date = twins.forecast(dates)
    days = (dates.to_numpy()[None, :] - twins.reference_time[:, None]) / np.timedelta64(1, "D")
    by_day = twins.forecast(days)
    np.testing.assert_allclose(by_date["y1"].values, by_day["y1"].values, rtol=1e-12)
    assert (by_date["time"].values == dates.to_numpy()).all()
    assert (by_date["date"].values == dates.to_numpy()[None, :]).all()
    one = twins.forecast("2020-12-01")  # a date string
    np.testing.assert_allclose(one["y1"].values[:, 0], by_date["y1"].values[:, 0], rtol=1e-12)
    with pytest.raises(ValueError, match="dates are absolute"):
        twins.forecast(dates, relative_to="last")
    with pytest.raises(ValueError, match="no calendar"):
        model.instantiate(cohort).forecast(dates)
    # days since the reference that all precede the first reading: NaN, and a warning says why
    with pytest.warns(UserWarning, match=r"before the first observation of 8 twin\(s\)"):
        early = twins.forecast([-5.0])
    assert np.isnan(early["y1"].values).all()


def test_forecasts_after_a_recorded_death_are_nan(cohort, model):
    """A death date (FHIR ``deceasedDateTime``) ends the forecast of that individual only;
    ``after_death="keep"`` forecasts through it, and ``update`` takes a death reported later."""
    last = cohort.to_long("labs").groupby("individual")["t"].max()
    died = {"p001": float(last["p001"]) + 20.0}
    twins = model.instantiate(dated_cohort(cohort, slice(None), deceased=died))
    assert twins.death_time[1] == died["p001"]  # every clock starts at 2020-01-01
    assert np.isnan(np.delete(twins.death_time, 1)).all()
    times = [died["p001"] - 10.0, float(last.max()) + 400.0]
    plain = model.instantiate(dated_cohort(cohort, slice(None))).forecast(times)
    with pytest.warns(UserWarning, match=r"1 twin\(s\) have a recorded death.*'p001'"):
        fc = twins.forecast(times)
    after = fc["t"].values > twins.death_time[:, None]
    assert after[1].tolist() == [False, True] and not np.delete(after, 1, axis=0).any()
    for var in ("y1", "y1_sd", "y2_q95"):
        assert np.isnan(fc[var].values[after]).all()
        np.testing.assert_allclose(fc[var].values[~after], plain[var].values[~after], rtol=1e-12)
    assert fc["y1"].attrs["units"] == "mmol/L" and not np.isnan(fc["t"].values).any()
    kept = twins.forecast(times, after_death="keep")
    np.testing.assert_allclose(kept["y1"].values, plain["y1"].values, rtol=1e-12)
    with pytest.raises(ValueError, match="after_death"):
        twins.forecast(times, after_death="drop")
    # a death reported with the next export is carried into the updated twins
    early = model.instantiate(dated_cohort(cohort, slice(0, 3)))
    assert np.isnan(early.death_time).all()
    later = early.update(dated_cohort(cohort, slice(3, None), deceased=died))
    np.testing.assert_allclose(later.death_time, twins.death_time)
    assert np.isnan(later[["p000", "p002"]].death_time).all()


def test_plot_of_a_calendar_twin_has_dates_the_display_name_and_the_death(cohort, model):
    import matplotlib
    import matplotlib.dates as mdates
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = cohort.to_long("labs").groupby("individual")["t"].max()
    died = {"p001": float(last["p001"]) + 20.0}
    dated = dated_cohort(cohort, slice(None), deceased=died)
    named = DynamicTwinModel.from_matrices(  # a schema with display names, as FHIR gives
        dated.schema, A=A, H=H, R=R, m0=M0, P0=P0, Qc=QC, B=B, b=b, c=C, agents=["drug"]
    )
    twins = named.instantiate(dated)
    ax = twins.plot("p001", "y1")
    assert ax.get_xlabel() == "date" and ax.get_ylabel() == "Glucose [mmol/L]"
    assert ax.get_title() == "p001: y1"
    obs = twins["p001"].observations()
    obs = obs[obs["feature"] == "y1"]
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(obs["t"].to_numpy(), unit="D")
    points = ax.collections[-1].get_offsets()[:, 0]
    np.testing.assert_allclose(points, mdates.date2num(when))
    death_x = mdates.date2num(pd.Timestamp("2020-01-01") + pd.Timedelta(days=died["p001"]))
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert mdates.date2num(lines["death"].get_xdata()[0]) == pytest.approx(death_x)
    band_end = ax.collections[0].get_paths()[0].vertices[:, 0].max()
    assert band_end == pytest.approx(death_x)  # the forecast stops at the death, no NaN gap
    plt.close(ax.figure)
    ax = twins.plot("p000", "y2", dates=False)
    assert ax.get_xlabel() == "days since reference" and "death" not in [
        line.get_label() for line in ax.get_lines()
    ]
    assert ax.get_ylabel() == "y2 [mmol/L]" and ax.get_title() == "p000"
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="calendar"):
        model.instantiate(cohort).plot("p000", "y1", dates=True)


def test_a_death_recorded_before_the_last_reading_or_without_a_date(cohort, model):
    """A date-only death reads as midnight, before readings of that day: the twin is still
    forecast up to its last observation. A 0/1 ``deceased`` flag has no date: no cutoff."""
    import pandas as pd

    import twin

    last = cohort.to_long("labs").groupby("individual")["t"].max()
    early = {"p001": float(last["p001"]) - 0.4}
    twins = model.instantiate(dated_cohort(cohort, slice(None), deceased=early))
    assert twins.death_cutoff[1] == twins.time[1]
    now = twins.forecast([0.0], relative_to="last")
    assert np.isfinite(now["y1"].values).all()
    with pytest.warns(UserWarning, match="recorded death"):
        later = twins.forecast([1.0], relative_to="last")
    assert np.isnan(later["y1"].values[1]).all()
    assert np.isfinite(np.delete(later["y1"].values, 1, axis=0)).all()
    dated = dated_cohort(cohort, slice(None))  # a calendar cohort
    long = dated.to_long("labs")[["individual", "time", "feature", "value"]]
    covariates = pd.DataFrame({"deceased": np.ones(len(cohort))}, index=cohort.individuals)
    flagged = twin.Cohort.from_tables(longitudinal={"labs": long}, covariates=covariates)
    assert flagged.reference_time.notna().all() and flagged.death_t.isna().all()
    # a 0/1 deceased_flag of 1 with no date (FHIR deceasedBoolean): dead by the last record
    covariates = pd.DataFrame(
        {"deceased": pd.to_datetime([pd.NaT] * len(cohort)), "deceased_flag": 0.0},
        index=cohort.individuals,
    )
    covariates.loc["p002", "deceased_flag"] = 1.0
    units = {"labs": {"y1": {"unit": "mmol/L"}, "y2": {"unit": "mmol/L"}}}
    undated = twin.Cohort.from_tables(
        longitudinal={"labs": long}, covariates=covariates, feature_info=units
    )
    assert undated.death_t["p002"] == -np.inf and undated.death_t.drop("p002").isna().all()
    twins = model.instantiate(undated)
    assert (
        twins.death_cutoff[2] == twins.time[2] and np.isnan(np.delete(twins.death_cutoff, 2)).all()
    )
    assert np.isfinite(twins.forecast([0.0], relative_to="last")["y1"].values).all()
    with pytest.warns(UserWarning, match="1 with no date of death: cut at the last record"):
        later = twins.forecast([30.0], relative_to="last")
    assert np.isnan(later["y1"].values[2]).all()
    assert np.isfinite(np.delete(later["y1"].values, 2, axis=0)).all()
    # a dated death without a calendar has no day: NaN, not an undated death
    days = cohort.to_long("labs").drop(columns="time").rename(columns={"t": "time"})
    days = days[list(long.columns)]
    covariates["deceased"] = pd.Timestamp("2021-01-01")
    nocal = twin.Cohort.from_tables(longitudinal={"labs": days}, covariates=covariates)
    assert nocal.death_t.isna().all()
    # a flag that is not a number is not read as deaths, and says so
    covariates["deceased_flag"] = "yes"
    with pytest.warns(UserWarning, match="'deceased_flag' is .* not 0/1 numbers"):
        text = twin.Cohort.from_tables(longitudinal={"labs": long}, covariates=covariates)
        assert text.death_t.notna().all()  # the dated deaths only
    # calibration forecasts readings that exist: an undated death drops nobody from it
    import copy

    flags_off = twin.Cohort.from_tables(longitudinal={"labs": long}, feature_info=units)
    with_flag = copy.deepcopy(model).calibrate_forecast(undated)
    without = copy.deepcopy(model).calibrate_forecast(flags_off)
    assert (with_flag["n"] == without["n"]).all() and (with_flag["n"] > 0).all()
    # a dated death already known is not replaced by an undated report
    known = model.instantiate(dated_cohort(cohort, slice(0, 3), deceased={"p002": 500.0}))
    updated = known.update(undated)
    assert updated.death_time[2] == 500.0
    # an undated report is taken where nothing was known
    assert (
        model.instantiate(dated_cohort(cohort, slice(0, 3))).update(undated).death_time[2]
        == -np.inf
    )
