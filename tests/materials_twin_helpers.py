"""Small fitted property twins shared by the materials-twin tests (fitted once per process).

Concrete rows: ``tests/data/materials/concrete_excerpt.csv`` (UCI Concrete Compressive
Strength, I-Cheng Yeh, DOI 10.24432/C5PK67, CC BY 4.0).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

import twin
from twin.materials import ProcessGraph, read_concrete, strength_at_ages
from twin.materials_twins import PropertyTwinModel, concrete_twin

DATA = Path(__file__).parent / "data" / "materials"
EXCERPT = DATA / "concrete_excerpt.csv"
#: Ages tested in at least two mixes of the excerpt.
EXCERPT_AGES = (3, 7, 14, 28, 90, 180, 270, 365)
TINY = twin.ModalitySpec(encoder_hidden=(32,), decoder_hidden=(32,))


@functools.cache
def excerpt_cohort() -> twin.Cohort:
    return strength_at_ages(read_concrete(EXCERPT), EXCERPT_AGES)


@functools.cache
def excerpt_twin(n_members: int = 1, n_jobs: int = 1) -> PropertyTwinModel:
    """A concrete twin fitted for a few epochs on the 14 mixes of the excerpt (shapes only)."""
    return concrete_twin(latent_dim=4, default_spec=TINY, n_members=n_members).fit(
        excerpt_cohort(),
        seed=0,
        epochs=30,
        validation_fraction=0.0,
        kl_warmup_epochs=5,
        n_jobs=n_jobs,
    )


def synthetic(n: int, seed: int) -> twin.Cohort:
    """Two settings a, b ~ U(0, 1); y1 = 3a + N(0, 0.3); y2 = -2a + b + N(0, 0.3)."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    ids = [f"s{seed}-{i}" for i in range(n)]
    proc = pd.DataFrame({"a": a, "b": b}, index=ids)
    props = pd.DataFrame(
        {"y1": 3 * a + rng.normal(0, 0.3, n), "y2": -2 * a + b + rng.normal(0, 0.3, n)}, index=ids
    )
    cohort = twin.Cohort.from_tables({"process": proc, "props": props})
    graph = ProcessGraph({"process": "processing", "props": "property"}, [("process", "props")])
    return graph.attach(cohort)


@functools.cache
def synthetic_twin() -> PropertyTwinModel:
    spec = twin.ModalitySpec(encoder_hidden=(32,), decoder_hidden=(32,))
    model = PropertyTwinModel(["process"], ["props"], latent_dim=3, default_spec=spec)
    return model.fit(
        synthetic(400, 0),
        seed=0,
        epochs=150,
        batch_size=200,
        lr=5e-3,
        kl_warmup_epochs=20,
        validation_fraction=0.0,
    )


def shared_effect(n: int, seed: int) -> tuple:
    """Settings a, b ~ U(0, 1) and a batch effect u ~ N(0, 1) that both properties share:
    y1 = sin(3a) + u + N(0, 0.2), y2 = a b - u + N(0, 0.2)."""
    rng = np.random.default_rng(seed)
    a, b, u = rng.uniform(0, 1, n), rng.uniform(0, 1, n), rng.normal(0, 1, n)
    ids = [f"u{seed}-{i}" for i in range(n)]
    proc = pd.DataFrame({"a": a, "b": b}, index=ids)
    props = pd.DataFrame(
        {"y1": np.sin(3 * a) + u + rng.normal(0, 0.2, n), "y2": a * b - u + rng.normal(0, 0.2, n)},
        index=ids,
    )
    cohort = twin.Cohort.from_tables({"process": proc, "props": props})
    return cohort, u


def fit_on_shared_effect(model: PropertyTwinModel) -> PropertyTwinModel:
    """``model`` fitted on 500 batches of :func:`shared_effect` (seed 0), quickly."""
    return model.fit(
        shared_effect(500, 0)[0],
        seed=0,
        epochs=200,
        batch_size=250,
        lr=5e-3,
        kl_warmup_epochs=20,
        validation_fraction=0.0,
    )
