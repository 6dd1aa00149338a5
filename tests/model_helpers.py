"""Simulated cohorts shared by the population-model tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

import twin


def simulate_clinical_omics(n: int = 240, seed: int = 3) -> twin.Cohort:
    """Two latent factors drive a mixed-type clinical block and an omics block."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    ids = [f"pt{k:03d}" for k in range(n)]
    stage = np.digitize(z[:, 0] + 0.3 * rng.normal(size=n), [-0.6, 0.6])
    clinical = pd.DataFrame(
        {
            "bmi": 27 + 3 * z[:, 0] + rng.normal(size=n),
            "sbp": 130 + 8 * z[:, 1] + 4 * rng.normal(size=n),
            "smoker": rng.random(n) < 1 / (1 + np.exp(-2.5 * z[:, 1])),
            "stage": pd.Categorical(np.array(["I", "II", "III"])[stage]),
            "admissions": rng.poisson(np.exp(0.3 + 0.6 * z[:, 0])),
        },
        index=ids,
    )
    omics = pd.DataFrame(
        z @ rng.normal(size=(2, 12)) + 0.5 * rng.normal(size=(n, 12)),
        index=ids,
        columns=[f"gene{j}" for j in range(12)],
    )
    # some entries missing at random
    clinical.loc[clinical.sample(frac=0.1, random_state=1).index, "sbp"] = np.nan
    omics.iloc[rng.random(omics.shape) < 0.05] = np.nan
    labs = pd.DataFrame(
        {
            "individual": ids[:5],
            "time": pd.to_datetime(["2020-01-01"] * 5),
            "feature": ["hba1c"] * 5,
            "value": [6.0, 6.5, 7.0, 5.5, 6.1],
        }
    )
    return twin.Cohort.from_tables(
        {"clinical": clinical, "omics": omics},
        longitudinal={"labs": labs},
        feature_types={"clinical": {"admissions": "count"}},
    )
