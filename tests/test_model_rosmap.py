"""Real data (ROSMAP excerpt, tests/data/omics): whole-block imputation on held-out
individuals is calibrated and never worse than imputing the training mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import twin
from twin.model import TwinModel

DATA = Path(__file__).parent / "data" / "omics"
BLOCKS = ("mrna", "methylation", "mirna")


@pytest.fixture(scope="module")
def fitted():
    tables = {b: pd.read_csv(DATA / f"rosmap_{b}.csv", index_col=0) for b in BLOCKS}
    cohort = twin.Cohort.from_tables(tables)
    train, test = cohort.split((0.75, 0.25), seed=0)
    model = TwinModel(cohort.schema, latent_dim=16).fit(train, seed=0, progress=False)
    return model, train, test


@pytest.mark.parametrize("block", BLOCKS)
def test_hidden_block_is_calibrated_and_not_worse_than_the_mean(fitted, block):
    model, train, test = fitted
    ds = model.instantiate(test.hide(block)).impute(n_draws=300, seed=0)
    y = test.values(block)
    centre = train.values(block).mean(0)
    r2 = 1 - ((y - ds[block].values) ** 2).sum() / ((y - centre) ** 2).sum()
    # the cross-modal signal is weak: shrink to the population, never below it
    assert r2 > -0.02
    inside = (y >= ds[f"{block}_q05"].values) & (y <= ds[f"{block}_q95"].values)
    assert 0.83 <= inside.mean() <= 0.96
    # the other blocks were given and come back untouched
    other = next(b for b in BLOCKS if b != block)
    np.testing.assert_array_equal(ds[other].values, test.values(other))
