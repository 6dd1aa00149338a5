"""Saving and loading a TwinModel: no pickle, atomic, schema and version checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import twin
from twin.model import ModalitySpec, TwinModel


def simulate(n: int = 100, seed: int = 0) -> twin.Cohort:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    ids = [f"r{k:03d}" for k in range(n)]
    a = pd.DataFrame(z @ rng.normal(size=(2, 5)) + 0.3 * rng.normal(size=(n, 5)), index=ids)
    a.columns = [f"a{j}" for j in range(5)]
    b = pd.DataFrame(
        {"grade": pd.Categorical(np.where(z[:, 0] > 0, "high", "low")), "dose": rng.normal(size=n)},
        index=ids,
    )
    return twin.Cohort.from_tables(
        {"a": a, "b": b},
        feature_info={"a": {"a0": {"unit": "mg/dL"}}},
        covariates=pd.DataFrame({"site": np.where(rng.random(n) < 0.5, "x", "y")}, index=ids),
    )


@pytest.fixture(scope="module")
def fitted():
    cohort = simulate()
    spec = ModalitySpec(encoder_hidden=(16,), decoder_hidden=(16,))
    model = TwinModel(cohort.schema, latent_dim=3, default_spec=spec, covariates=["site"])
    model.fit(cohort, seed=0, epochs=30, progress=False)
    return model, cohort


def test_round_trip_gives_identical_twins(fitted, tmp_path):
    model, cohort = fitted
    path = model.save(tmp_path / "model")
    loaded = TwinModel.load(path)
    partial = cohort.hide("a", individuals=cohort.individuals[:10])
    xr.testing.assert_identical(
        model.instantiate(partial).impute(n_draws=30, seed=3),
        loaded.instantiate(partial).impute(n_draws=30, seed=3),
    )
    assert loaded.schema == model.schema
    assert loaded.specs == model.specs
    assert loaded.covariate_encoder == model.covariate_encoder
    assert loaded.history.train_loss == model.history.train_loss
    assert loaded.history.expert_temperature == model.history.expert_temperature


def test_files_are_plain_tensors_and_json(fitted, tmp_path):
    model, _ = fitted
    path = model.save(tmp_path / "m")
    state = torch.load(path / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    meta = json.loads((path / "model.json").read_text())
    assert meta["format"] == "twin.TwinModel" and meta["format_version"] == 1
    assert meta["schema_hash"] == model.schema.hash()
    assert meta["latent_dim"] == 3
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "weights.pt"]


def test_never_overwrites_silently(fitted, tmp_path):
    model, _ = fitted
    model.save(tmp_path / "m")
    before = (tmp_path / "m" / "weights.pt").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        model.save(tmp_path / "m")
    assert (tmp_path / "m" / "weights.pt").read_bytes() == before
    model.save(tmp_path / "m", overwrite=True)


def test_refuses_a_different_schema_naming_the_difference(fitted, tmp_path):
    model, cohort = fitted
    path = model.save(tmp_path / "m")
    other = simulate().data["a"].to_pandas().rename(columns={"a4": "a9"})
    changed = twin.Cohort.from_tables({"a": other, "b": cohort.data["b"].to_pandas()})
    with pytest.raises(ValueError, match="a9"):
        TwinModel.load(path, schema=changed.schema)
    unit = twin.Cohort.from_tables(
        {"a": cohort.data["a"].to_pandas()}, feature_info={"a": {"a0": {"unit": "mmol/L"}}}
    )
    with pytest.raises(ValueError, match="mmol/L"):
        TwinModel.load(path, schema=unit.schema)
    with pytest.raises(ValueError, match="mmol/L"):
        model.instantiate(unit)
    assert TwinModel.load(path, schema=cohort.schema).schema == model.schema


def test_refuses_damaged_or_foreign_files(fitted, tmp_path):
    model, _ = fitted
    path = model.save(tmp_path / "m")
    meta = json.loads((path / "model.json").read_text())
    (path / "model.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        TwinModel.load(path)
    meta["schema"]["modalities"][0]["features"][0]["unit"] = "g"
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="hash"):
        TwinModel.load(path)
    meta = json.loads((model.save(tmp_path / "m3") / "model.json").read_text())
    edited = json.loads(json.dumps(meta))
    edited["specs"]["a"]["activation"] = (
        "tanh" if meta["specs"]["a"]["activation"] != "tanh" else "relu"
    )
    (tmp_path / "m3" / "model.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="edited or damaged after it was written"):
        TwinModel.load(tmp_path / "m3")
    # a file written before metadata was sealed loads with the schema check only
    unsealed = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    (tmp_path / "m3" / "model.json").write_text(json.dumps(unsealed))
    assert TwinModel.load(tmp_path / "m3").specs == model.specs
    path2 = model.save(tmp_path / "m2")
    state = torch.load(path2 / "weights.pt", weights_only=True)
    state[next(iter(state))] += 1.0
    torch.save(state, path2 / "weights.pt")
    with pytest.raises(ValueError, match="checksum"):
        TwinModel.load(path2)
    with pytest.raises(FileNotFoundError):
        TwinModel.load(tmp_path / "nothing")


def test_dynamic_model_json_is_sealed_too(tmp_path):
    from dynamic_sim import M0, P0, QC, A, B, C, H, R, b, simulate_cohort

    from twin.model.dynamic_model import DynamicTwinModel

    cohort = simulate_cohort(3, seed=0)
    model = DynamicTwinModel.from_matrices(
        cohort.schema, A=A, H=H, R=R, m0=M0, P0=P0, Qc=QC, B=B, b=b, c=C, agents=["drug"]
    )
    path = model.save(tmp_path / "dyn")
    meta = json.loads((path / "model.json").read_text())
    assert DynamicTwinModel.load(path).agents == ["drug"]
    (path / "model.json").write_text(json.dumps({**meta, "agents": ["other"]}))
    with pytest.raises(ValueError, match="edited or damaged after it was written"):
        DynamicTwinModel.load(path)
