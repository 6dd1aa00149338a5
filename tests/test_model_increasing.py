"""ModalitySpec(increasing=True): conditional means that never decrease along the features."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest
import torch

import twin
from twin.model import ModalitySpec, TwinModel
from twin.model.increasing import IncreasingMeans, increasing_means_jax
from twin.model.jax_export import export_model, make_log_likelihood, torch_log_likelihood

AGES = np.array([3.0, 7.0, 28.0, 90.0, 180.0, 365.0])


def growth_cohort(n: int = 240, seed: int = 0) -> tuple[twin.Cohort, pd.DataFrame]:
    """Strength-like curves that gain in log-age up to 28 days and then level off.

    As in the concrete data, the late ages were measured on few batches, mostly weak
    ones (the training mean at 365 days is below the one at 28 days): a free decoder
    fits each late age on its own and learns falls that are not there.  Returns the
    cohort and the noiseless curves.
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    ids = [f"b{k:03d}" for k in range(n)]
    recipe = pd.DataFrame(
        z @ rng.normal(size=(2, 4)) + 0.3 * rng.normal(size=(n, 4)),
        index=ids,
        columns=[f"x{j}" for j in range(4)],
    )
    level = 20 + 6 * z[:, 0]
    gain = 5 + 1.5 * np.tanh(z[:, 1])
    log_age = np.log(np.minimum(AGES, 28.0))
    truth = level[:, None] + gain[:, None] * log_age
    curve = truth + 2.0 * rng.normal(size=(n, AGES.size))
    weak = level < np.median(level)
    observed = rng.random((n, AGES.size)) < 0.7
    observed[:, 3:] &= weak[:, None] & (rng.random((n, 1)) < 0.3)
    columns = [f"fc_{a:g}d" for a in AGES]
    strength = pd.DataFrame(np.where(observed, curve, np.nan), index=ids, columns=columns)
    cohort = twin.Cohort.from_tables({"recipe": recipe, "strength": strength})
    return cohort, pd.DataFrame(truth, index=ids, columns=columns)


def fitted(cohort: twin.Cohort, increasing: bool) -> TwinModel:
    small = ModalitySpec(encoder_hidden=(32,), decoder_hidden=(32,), decoder_weights="point")
    specs = {
        "strength": ModalitySpec(
            encoder_hidden=(32,),
            decoder_hidden=(32,),
            decoder_weights="point",
            increasing=increasing,
        )
    }
    model = TwinModel(cohort.schema, latent_dim=2, specs=specs, default_spec=small)
    return model.fit(cohort, seed=0, progress=False, epochs=120, patience=40)


@pytest.fixture(scope="module")
def data():
    cohort, truth = growth_cohort()
    train, test = cohort.split((0.75, 0.25), seed=0)
    return truth, train, test


@pytest.fixture(scope="module")
def increasing_model(data):
    return fitted(data[1], increasing=True)


def test_the_map_is_non_decreasing_on_the_data_scale_and_starts_at_the_centres():
    block = IncreasingMeans(4)
    center = torch.tensor([10.0, 25.0, 24.0, 40.0])  # a training dip between 2 and 3
    scale = torch.tensor([3.0, 5.0, 8.0, 4.0])
    block.fit_statistics(center, scale)
    raw = torch.randn(500, 4, generator=torch.Generator().manual_seed(0)) * 3
    means = block(raw) * scale + center
    assert (torch.diff(means, dim=-1) >= 0).all()
    at_zero = block(torch.zeros(1, 4))[0] * scale + center
    # increasing centres are reproduced; the dip becomes the smallest allowed step
    torch.testing.assert_close(at_zero[:2], center[:2])
    assert at_zero[2] == pytest.approx(25.0 + 0.01 * scale.mean().item(), rel=1e-4)
    got = np.asarray(jax.vmap(lambda r: increasing_means_jax(block.export(), r))(raw.numpy()))
    np.testing.assert_allclose(got, block(raw).numpy(), rtol=1e-5, atol=1e-5)


def test_imputed_curves_never_fall_while_a_free_decoder_learns_the_selection(
    data, increasing_model
):
    _, train, test = data
    hidden = test.hide("strength")
    rising = increasing_model.instantiate(hidden).impute(n_draws=200, seed=0)["strength"].values
    assert (np.diff(rising, axis=1) >= -1e-4).all()
    free = fitted(train, increasing=False).instantiate(hidden).impute(n_draws=200, seed=0)
    falls = np.diff(free["strength"].values, axis=1) < 0
    assert falls.any(axis=1).mean() > 0.2  # the confounded data this constraint is for


def test_held_out_late_ages_are_closer_to_the_true_curves(data, increasing_model):
    truth, train, test = data
    late = ["fc_90d", "fc_180d", "fc_365d"]
    hidden = test.hide("strength", features=late)
    true_late = truth.loc[list(test.individuals), late].to_numpy()

    def late_error(model: TwinModel) -> float:
        pred = model.instantiate(hidden).impute(n_draws=200, seed=0)["strength"]
        return float(np.mean(np.abs(pred.sel(strength_feature=late).values - true_late)))

    err_rising, err_free = late_error(increasing_model), late_error(fitted(train, False))
    assert err_rising < 0.8 * err_free


def test_jax_export_and_save_load_keep_the_constraint(data, increasing_model, tmp_path):
    model, test = increasing_model, data[2]
    data_ = model.prepare(test.select(list(test.individuals[:3])))
    z = np.random.default_rng(0).normal(size=(5, 3, 2)).astype(np.float32)
    expected = torch_log_likelihood(model, data_, z)
    exported = export_model(model)
    assert exported["modalities"]["strength"]["increasing"] is not None
    fn = make_log_likelihood(
        exported,
        {m: v[1].numpy() for m, v in data_.values.items()},
        {m: k[1].numpy() for m, k in data_.masks.items()},
    )
    np.testing.assert_allclose(np.asarray(jax.vmap(fn)(z[:, 1])), expected[:, 1], rtol=2e-4)

    model.save(tmp_path / "m")
    back = TwinModel.load(tmp_path / "m")
    assert back.specs["strength"].increasing
    hidden = test.hide("strength")
    a = model.instantiate(hidden).impute(n_draws=50, seed=1)["strength"].values
    b = back.instantiate(hidden).impute(n_draws=50, seed=1)["strength"].values
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert "non-decreasing means" in repr(back)


def test_a_modality_with_other_feature_types_is_refused():
    ids = [f"i{k}" for k in range(10)]
    table = pd.DataFrame({"a": np.arange(10.0), "b": np.arange(10) % 2 == 0}, index=ids)
    cohort = twin.Cohort.from_tables({"m": table})
    with pytest.raises(ValueError, match=r"'m'.*increasing=True.*all continuous.*binary"):
        TwinModel(cohort.schema, specs={"m": ModalitySpec(increasing=True)}).fit(
            cohort, epochs=1, progress=False
        )
    with pytest.raises(TypeError, match="increasing must be True or False"):
        ModalitySpec(increasing="yes")
