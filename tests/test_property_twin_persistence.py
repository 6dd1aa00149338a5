"""PropertyTwinModel.save / load: the same predictions after a round trip, no pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from materials_twin_helpers import excerpt_cohort, excerpt_twin, synthetic_twin

import twin
from twin.materials_twins import CONCRETE_DERIVED, PropertyTwinModel, concrete_twin
from twin.materials_twins.derived import DerivedFeature, DerivedFeatures


def same_predictions(a: PropertyTwinModel, b: PropertyTwinModel, inputs, **kw) -> None:
    pa = a.predict(inputs, n_draws=64, seed=3, **kw)
    pb = b.predict(inputs, n_draws=64, seed=3, **kw)
    for v in ("mean", "sd", "q05", "q95"):
        np.testing.assert_allclose(pa[v].values, pb[v].values, rtol=1e-5, atol=1e-6)


def test_a_concrete_ensemble_round_trips(tmp_path):
    model = excerpt_twin(n_members=2)
    folder = model.save(tmp_path / "concrete")
    back = PropertyTwinModel.load(folder)
    assert back.derived is CONCRETE_DERIVED and back.n_members == 2
    assert back.specs["strength_at_age"].increasing
    mixes = excerpt_cohort().select(modalities=["mix"])
    same_predictions(model, back, mixes)
    early = model.output_frame(excerpt_cohort())[["fc_7d"]]
    same_predictions(model, back, mixes, observed=early)
    # candidates as a table: the derived inputs are recomputed from the components
    table = model.training_inputs.iloc[:3].drop(columns=CONCRETE_DERIVED.names)
    same_predictions(model, back, table)
    ages = [5.0, 28.0, 120.0]
    np.testing.assert_allclose(
        model.curve(mixes, ages, n_draws=64, seed=1)["mean"].values,
        back.curve(mixes, ages, n_draws=64, seed=1)["mean"].values,
        rtol=1e-5,
    )
    assert back.input_stats.equals(model.input_stats)
    assert back.training_inputs.equals(model.training_inputs)
    assert back.graph == model.graph and repr(back) == repr(model)


def test_existing_folders_are_not_overwritten_and_edits_are_refused(tmp_path):
    model = synthetic_twin()
    folder = model.save(tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(folder)
    model.save(folder, overwrite=True)
    meta_path = folder / "model.json"
    meta = json.loads(meta_path.read_text())
    assert meta["format"] == "twin.PropertyTwinModel" and meta["derived"] == ""
    meta["schema"]["modalities"][0]["features"][0]["unit"] = "kg"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match its hash"):
        PropertyTwinModel.load(folder)
    with pytest.raises(ValueError, match="not a twin.TwinModel file"):
        twin.TwinModel.load(folder)


def test_custom_derived_features_must_be_given_again(tmp_path, monkeypatch):
    ratio = DerivedFeature("ab_ratio", ("a", "b"), lambda a, b: a / b)
    derived = DerivedFeatures([ratio])
    model = synthetic_twin()
    monkeypatch.setattr(model, "derived", derived)
    folder = model.save(tmp_path / "custom")
    with pytest.raises(ValueError, match=r"custom derived features \['ab_ratio'\].*derived="):
        PropertyTwinModel.load(folder)
    with pytest.raises(ValueError, match="given, the twin was saved with"):
        PropertyTwinModel.load(folder, derived=CONCRETE_DERIVED)
    assert PropertyTwinModel.load(folder, derived=derived).derived is derived


def test_a_twin_on_a_regression_mean_is_refused_with_the_reason(tmp_path):
    from sklearn.linear_model import LinearRegression

    model = concrete_twin(latent_dim=1, mean_model=LinearRegression)
    with pytest.raises(ValueError, match="scikit-learn estimators.*no pickle"):
        model.save(tmp_path / "m")
    with pytest.raises(RuntimeError, match="not fitted"):
        concrete_twin().save(tmp_path / "m")
    assert not (tmp_path / "m").exists()
