"""Simulated longitudinal cohorts from a known linear-Gaussian SDE (test helper, not a test)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.linalg

import twin

#: A known two-dimensional system: a slow level and a faster deviation; one agent.
A = np.array([[-0.01, 0.0], [0.0, -0.1]])
B = np.array([[0.0], [0.3]])  # the drug pushes the fast coordinate up
b = np.array([0.0, 0.0])
QC = np.diag([0.002, 0.02])
H = np.array([[1.0, 1.0], [0.5, -1.0]])
C = np.array([10.0, 5.0])
R = np.array([0.05, 0.1])
M0 = np.array([0.0, 0.0])
P0 = np.diag([1.0, 0.2])


def discretize(
    A: np.ndarray, Qc: np.ndarray, dt: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``F``, ``Q``, ``Gamma`` over a gap (Van Loan, SciPy; cached)."""
    key = (A.tobytes(), Qc.tobytes(), float(dt))
    if key not in _CACHE:
        _CACHE[key] = _discretize(A, Qc, dt)
    return _CACHE[key]


_CACHE: dict = {}


def _discretize(A: np.ndarray, Qc: np.ndarray, dt: float) -> tuple:
    D = A.shape[0]
    M = np.zeros((2 * D, 2 * D))
    M[:D, :D], M[:D, D:], M[D:, D:] = -A, Qc, A.T
    E = scipy.linalg.expm(M * dt)
    F = E[D:, D:].T
    Q = F @ E[:D, D:]
    N = np.zeros((2 * D, 2 * D))
    N[:D, :D], N[:D, D:] = A, np.eye(D)
    G = scipy.linalg.expm(N * dt)[:D, D:]
    return F, 0.5 * (Q + Q.T), G


def simulate_cohort(
    n: int,
    seed: int,
    *,
    n_obs: tuple[int, int] = (6, 10),
    treated_share: float = 0.5,
    drug_start: float = 30.0,
    missing: float = 0.2,
    A: np.ndarray = A,
    B: np.ndarray = B,
) -> twin.Cohort:
    """``n`` individuals observed at irregular times (days 0..~300); half get the drug from ``drug_start``.

    Gaps between visits are random multiples of 5 days (5 to 60). The drug is a step
    exposure of height 1 from ``drug_start`` on. States are drawn with exact
    transitions, splitting the gap at the drug start.
    """
    rng = np.random.default_rng(seed)
    rows, ivs = [], []
    for i in range(n):
        pid = f"p{i:03d}"
        k = rng.integers(n_obs[0], n_obs[1] + 1)
        times = np.concatenate([[0.0], np.cumsum(5.0 * rng.integers(1, 13, size=k - 1))])
        treated = rng.uniform() < treated_share
        if treated:
            ivs.append({"individual": pid, "agent": "drug", "start_t": drug_start, "dose": 1.0})
        z = rng.multivariate_normal(M0, P0)
        t_prev = 0.0
        for t in times:
            # exact transition from t_prev to t with the step input split at drug_start
            cuts = [t_prev, *([drug_start] if treated and t_prev < drug_start < t else []), t]
            for a, c in zip(cuts[:-1], cuts[1:], strict=True):
                if c > a:
                    F, Q, G = discretize(A, QC, c - a)
                    u = 1.0 if (treated and a >= drug_start) else 0.0
                    z = F @ z + G @ (B[:, 0] * u + b) + rng.multivariate_normal(np.zeros(2), Q)
            t_prev = t
            y = H @ z + C + rng.normal(size=2) * np.sqrt(R)
            for f, name in enumerate(("y1", "y2")):
                if rng.uniform() >= missing:
                    rows.append({"individual": pid, "time": t, "feature": name, "value": y[f]})
    long = pd.DataFrame(rows)
    table = pd.DataFrame(ivs, columns=["individual", "agent", "start_t", "dose"])
    return twin.Cohort.from_tables(
        longitudinal={"labs": long},
        interventions=table,
        feature_info={"labs": {"y1": {"unit": "mmol/L"}, "y2": {"unit": "mmol/L"}}},
    )


def dated_cohort(cohort, visits: slice, deceased: dict | None = None):
    """The cohort's labs at ``visits`` as calendar dates, read alone (own reference times);
    ``deceased`` maps ids to days (from 2020-01-01) of a recorded death."""
    day0 = pd.Timestamp("2020-01-01")
    long = cohort.to_long("labs")
    rank = long.groupby("individual")["t"].rank(method="dense").astype(int) - 1
    keep = np.isin(rank, np.arange(rank.max() + 1)[visits])
    long = long[keep]
    table = pd.DataFrame(
        {
            "individual": long["individual"],
            "time": day0 + pd.to_timedelta(long["t"], unit="D"),
            "feature": long["feature"],
            "value": long["value"].astype(float),
        }
    )
    iv = cohort.interventions
    iv = pd.DataFrame(
        {
            "individual": iv["individual"],
            "agent": iv["agent"],
            "start": day0 + pd.to_timedelta(iv["start_t"], unit="D"),
            "dose": iv["dose"],
        }
    )
    info = {"labs": {"y1": {"unit": "mmol/L", "display": "Glucose"}, "y2": {"unit": "mmol/L"}}}
    covariates = None
    if deceased is not None:
        ids = sorted(set(table["individual"]))
        when = [day0 + pd.Timedelta(days=deceased[i]) if i in deceased else pd.NaT for i in ids]
        covariates = pd.DataFrame({"deceased": pd.to_datetime(when)}, index=ids)
    return twin.Cohort.from_tables(
        longitudinal={"labs": table}, interventions=iv, feature_info=info, covariates=covariates
    )
