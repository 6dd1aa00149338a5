"""Feature transforms, history windows and step sequences of the dynamic model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import twin
from twin.cohort.window import first_observations, observations_before, observations_from
from twin.model.dynamic_data import Sequences, intervention_event_times, pack_steps
from twin.model.feature_transform import FeatureTransform


def test_log_transform_moments_and_quantiles_match_monte_carlo():
    tr = FeatureTransform(
        ["d", "x"], ["log+5", "identity"], np.array([3.0, 1.0]), np.array([0.5, 2.0])
    )
    mean, var = np.array([0.2, -0.3]), np.array([0.3, 0.5])
    m, sd, (q05, q50) = tr.moments(mean, var, (0.05, 0.5))
    rng = np.random.default_rng(0)
    y = mean + np.sqrt(var) * rng.standard_normal((400_000, 2))
    x = tr.decode(y)
    np.testing.assert_allclose(m, x.mean(0), rtol=3e-3)
    np.testing.assert_allclose(sd, x.std(0), rtol=1e-2)
    np.testing.assert_allclose(q05, np.quantile(x, 0.05, axis=0), rtol=3e-3)
    np.testing.assert_allclose(q50, np.quantile(x, 0.5, axis=0), rtol=3e-3, atol=1e-2)
    values = np.array([[0.0, -4.0], [12.0, 3.0]])
    np.testing.assert_allclose(tr.decode(tr.encode(values)), values, atol=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        tr.encode(np.array([[-1.0, 0.0]]))
    with pytest.raises(ValueError, match="log\\+C"):
        FeatureTransform(["d"], ["sqrt"], np.zeros(1), np.ones(1))
    fitted = FeatureTransform.fit(
        ["d"], np.array([[1.0], [3.0], [np.nan]]), np.array([[1], [1], [0]], bool), {"d": "log"}
    )
    assert fitted.mean[0] == pytest.approx(np.log(3.0) / 2)


def test_pack_steps_sorts_valid_entries_and_pads_with_the_last_time():
    times = np.array([[5.0, 1.0, np.nan, 3.0], [np.nan, np.nan, np.nan, np.nan]])
    valid = np.array([[True, True, True, False], [True, False, False, False]])
    order, n, packed = pack_steps(times, valid)
    assert n.tolist() == [2, 0]
    np.testing.assert_array_equal(packed, [[1.0, 5.0], [0.0, 0.0]])
    np.testing.assert_array_equal(order[0], [1, 0])
    a = Sequences(
        np.array([[1.0, 2.0]]), np.ones((1, 2, 1)), np.ones((1, 2, 1), bool), np.array([2])
    )
    b = Sequences(
        np.array([[1.5, 1.5]]),
        np.full((1, 2, 1), 7.0),
        np.array([[[True], [False]]]),
        np.array([1]),
    )
    both = Sequences.concatenate(a, b)
    np.testing.assert_array_equal(both.times[0, :3], [1.0, 1.5, 2.0])
    assert both.n_steps.tolist() == [3] and both.mask.sum() == 3 and both.y[0, 1, 0] == 7.0


def cohort():
    long = pd.DataFrame(
        {
            "individual": ["a", "a", "a", "a", "b", "b"],
            "time": [0.0, 10.0, 10.0, 30.0, 5.0, 50.0],
            "feature": ["x", "x", "y", "x", "y", "x"],
            "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    iv = pd.DataFrame(
        {
            "individual": ["a", "b", "b"],
            "agent": ["d", "d", "e"],
            "start_t": [3.0, 1.0, 2.0],
            "end_t": [8.0, np.nan, 4.0],
        }
    )
    return twin.Cohort.from_tables(longitudinal={"labs": long}, interventions=iv)


def test_history_windows_hide_later_observations():
    c = cohort()
    before = observations_before(c, {"a": 10.0})
    assert before.mask("labs")[0].sum() == 1 and before.mask("labs")[1].sum() == 2  # b untouched
    late = observations_from(c, 10.0)
    assert late.mask("labs")[0].sum() == 3 and late.mask("labs")[1].sum() == 1
    first = first_observations(c, 2, "labs", "x")  # a: x at 0, 10 -> keep t < 30
    assert first.mask("labs")[0].sum() == 3
    any_feature = first_observations(c, 1, "labs")
    assert any_feature.mask("labs").sum(axis=(1, 2)).tolist() == [1, 1]
    assert len(first.interventions) == 3 and (first.covariates.index == c.covariates.index).all()


def test_event_times_of_the_modelled_agents_with_delays():
    c = cohort()
    ev = intervention_event_times(c.interventions, ["a", "b"], ["d"], {"d": 1.0})
    np.testing.assert_array_equal(ev[0], [4.0, 9.0])
    assert ev[1, 0] == 2.0 and np.isnan(ev[1, 1])
