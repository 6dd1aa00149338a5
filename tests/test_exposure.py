"""Exposure matrices from dosing schedules."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.integrate
import torch

from twin.dynamics import exposure_from_interventions, exposure_from_table, schedule_exposure

DT = torch.float64


def test_every_21_days_on_off_pattern_and_dose():
    days = torch.arange(0.0, 80.0, dtype=DT)
    for mode in ("point", "average"):
        u = schedule_exposure(days, start=0.0, stop=50.0, dose=75.0, interval=21.0, mode=mode)
        on = torch.nonzero(u).squeeze(-1).tolist()
        assert on == [0, 21, 42], mode
        assert torch.equal(u[[0, 21, 42]], torch.full((3,), 75.0, dtype=DT))
    # Open-ended, 3-day administrations starting on day 5.
    u = schedule_exposure(days, start=5.0, dose=2.0, interval=21.0, duration=3.0, mode="point")
    expected = [d for d in range(80) if d >= 5 and (d - 5) % 21 < 3]
    assert torch.nonzero(u).squeeze(-1).tolist() == expected
    assert set(u[expected].tolist()) == {2.0}


def test_step_average_conserves_dose_on_coarse_grid():
    # Weekly grid misses day-long pulses pointwise; averages keep the total dose.
    grid = torch.arange(0.0, 127.0, 7.0, dtype=DT)
    u = schedule_exposure(grid, start=1.0, stop=100.0, dose=3.0, interval=21.0)
    total = (u[:-1] * torch.diff(grid)).sum()
    n_doses = len(range(1, 100, 21))
    assert total.item() == pytest.approx(3.0 * n_doses, rel=1e-12)
    point = schedule_exposure(grid, start=1.0, stop=100.0, dose=3.0, interval=21.0, mode="point")
    assert point.sum() == 0
    # Continuous infusion on [2.5, 10): fractional overlaps with unit steps.
    g = torch.arange(0.0, 13.0, dtype=DT)
    u = schedule_exposure(g, start=2.5, stop=10.0, dose=4.0)
    expected = [0, 0, 2, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0]
    assert u.tolist() == expected


def bolus_reference(t, start, stop, dose, interval, half_life):
    k = math.log(2) / half_life
    doses = [start + j * interval for j in range(1000) if start + j * interval < stop]
    return sum(dose * math.exp(-k * (t - tj)) for tj in doses if tj <= t)


def test_bolus_decay_matches_analytic_sum():
    t = torch.linspace(-3.0, 90.0, 301, dtype=DT)
    u = schedule_exposure(
        t, start=2.0, stop=60.0, dose=5.0, interval=7.0, kernel="bolus", half_life=3.0, mode="point"
    )
    ref = [bolus_reference(x, 2.0, 60.0, 5.0, 7.0, 3.0) for x in t.tolist()]
    np.testing.assert_allclose(u.numpy(), ref, rtol=1e-12, atol=1e-12)
    # Single dose (no interval): pure exponential decay.
    u1 = schedule_exposure(t, start=2.0, dose=5.0, kernel="bolus", half_life=3.0, mode="point")
    ref1 = np.where(t.numpy() >= 2.0, 5.0 * 0.5 ** ((t.numpy() - 2.0) / 3.0), 0.0)
    np.testing.assert_allclose(u1.numpy(), ref1, rtol=1e-12, atol=1e-14)


def test_bolus_average_is_exact_step_mean():
    grid = torch.tensor([0.0, 1.5, 4.0, 9.0, 9.0, 20.0, 33.0], dtype=DT)
    kw = dict(start=1.0, stop=25.0, dose=2.0, interval=5.0, kernel="bolus", half_life=4.0)
    u = schedule_exposure(grid, **kw, mode="average")
    for k in range(len(grid) - 1):
        a, b = grid[k].item(), grid[k + 1].item()
        if b == a:
            assert u[k].item() == pytest.approx(bolus_reference(a, 1, 25, 2, 5, 4))
            continue
        breaks = [x for x in np.arange(1.0, 25.0, 5.0) if a < x < b]
        integral, _ = scipy.integrate.quad(
            lambda s: bolus_reference(s, 1, 25, 2, 5, 4), a, b, points=breaks or None, epsabs=1e-12
        )
        assert u[k].item() == pytest.approx(integral / (b - a), rel=1e-9, abs=1e-12)


def test_batched_schedule_parameters():
    times = torch.arange(0.0, 30.0, dtype=DT).expand(3, 30)
    start = torch.tensor([0.0, 5.0, 10.0], dtype=DT)
    interval = torch.tensor([7.0, math.nan, 14.0], dtype=DT)
    u = schedule_exposure(
        times,
        start=start,
        dose=torch.tensor([1.0, 2.0, 3.0], dtype=DT),
        interval=interval,
        mode="point",
    )
    assert u.shape == (3, 30)
    assert torch.nonzero(u[0]).squeeze(-1).tolist() == [0, 7, 14, 21, 28]
    assert torch.nonzero(u[1]).squeeze(-1).tolist() == list(
        range(5, 30)
    )  # NaN interval: continuous
    assert torch.nonzero(u[2]).squeeze(-1).tolist() == [10, 24]
    assert u[2, 24].item() == 3.0


def test_exposure_from_table():
    table = pd.DataFrame(
        {
            "individual": ["p1", "p1", "p2", "p2", "p9", "p1"],
            "agent": ["cis", "rt", "cis", "cis", "cis", "unknown"],
            "start_t": [0.0, 3.0, 1.0, 5.0, 0.0, 0.0],
            "end_t": [40.0, np.nan, np.nan, 8.0, 10.0, 10.0],
            "dose": [75.0, 2.0, 50.0, np.nan, 1.0, 1.0],
            "interval": [21.0, np.nan, 21.0, np.nan, np.nan, np.nan],
            "unit": ["mg", "Gy", "mg", "mg", "mg", "mg"],
        }
    )
    times = torch.stack([torch.arange(0.0, 30.0, dtype=DT), torch.arange(0.0, 30.0, dtype=DT) * 2])
    u = exposure_from_table(table, ["p1", "p2"], ["cis", "rt"], times, mode="point")
    assert u.shape == (2, 30, 2)
    ref_p1_cis = schedule_exposure(times[0], 0.0, 40.0, 75.0, 21.0, mode="point")
    ref_p1_rt = schedule_exposure(times[0], 3.0, None, 2.0, None, mode="point")
    ref_p2_cis = schedule_exposure(
        times[1], 1.0, None, 50.0, 21.0, mode="point"
    ) + schedule_exposure(times[1], 5.0, 8.0, 1.0, None, mode="point")
    torch.testing.assert_close(u[0, :, 0], ref_p1_cis)
    torch.testing.assert_close(u[0, :, 1], ref_p1_rt)
    torch.testing.assert_close(u[1, :, 0], ref_p2_cis)
    assert u[1, :, 1].abs().sum() == 0
    # Bolus kernel per agent, and a per-row half-life column.
    u_b = exposure_from_table(
        table,
        ["p1", "p2"],
        ["cis", "rt"],
        times,
        kernels={"cis": "bolus"},
        half_lives={"cis": 2.0},
        mode="point",
    )
    ref = schedule_exposure(
        times[0], 0.0, 40.0, 75.0, 21.0, kernel="bolus", half_life=2.0, mode="point"
    )
    torch.testing.assert_close(u_b[0, :, 0], ref)
    torch.testing.assert_close(u_b[0, :, 1], ref_p1_rt)
    with pytest.raises(ValueError, match="half_life"):
        exposure_from_table(table, ["p1", "p2"], ["cis"], times, kernels={"cis": "bolus"})


def test_exposure_from_interventions_sums_per_agent():
    times = torch.arange(0.0, 10.0, dtype=DT)
    ivs = [
        {"agent": "a", "dose": 1.0, "start": 0.0, "stop": 5.0},
        {"agent": "a", "dose": 2.0, "start": 3.0, "stop": 7.0},
        {
            "agent": "b",
            "dose": 1.0,
            "start": 2.0,
            "interval": 4.0,
            "kernel": "bolus",
            "half_life": 1.0,
        },
    ]
    u = exposure_from_interventions(ivs, ["a", "b"], times, mode="point")
    assert u[:, 0].tolist() == [1, 1, 1, 3, 3, 2, 2, 0, 0, 0]
    assert u[2, 1].item() == 1.0 and u[3, 1].item() == pytest.approx(0.5)
    with pytest.raises(KeyError, match="'c'"):
        exposure_from_interventions([{"agent": "c"}], ["a"], times)
