"""TwinModel construction and training: seeds, early stopping, warm-up, options, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import twin
from twin.model import ModalitySpec, TrainingConfig, TwinModel
from twin.model.twin_model import resolve_device

SPEC = ModalitySpec(encoder_hidden=(16,), decoder_hidden=(16,))
FAST = {"epochs": 40, "patience": 10, "kl_warmup_epochs": 10, "progress": False}


def simulate(n: int = 160, seed: int = 0, site_effect: float = 0.0) -> twin.Cohort:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    ids = [f"s{k:03d}" for k in range(n)]
    site = np.where(rng.random(n) < 0.5, "A", "B")
    shift = site_effect * (site == "B")[:, None]
    a = z @ rng.normal(size=(2, 6)) + 0.4 * rng.normal(size=(n, 6))
    b = z @ rng.normal(size=(2, 5)) + 0.4 * rng.normal(size=(n, 5)) + shift
    c = rng.normal(size=(n, 3))
    return twin.Cohort.from_tables(
        {
            "a": pd.DataFrame(a, index=ids, columns=[f"a{j}" for j in range(6)]),
            "b": pd.DataFrame(b, index=ids, columns=[f"b{j}" for j in range(5)]),
            "c": pd.DataFrame(c, index=ids, columns=[f"c{j}" for j in range(3)]),
        },
        covariates=pd.DataFrame({"site": site, "age": rng.normal(60, 10, n)}, index=ids),
    )


@pytest.fixture(scope="module")
def cohort():
    return simulate()


def test_same_seed_same_losses_and_imputation(cohort):
    runs = []
    for _ in range(2):
        m = TwinModel(cohort.schema, latent_dim=2, default_spec=SPEC).fit(cohort, seed=7, **FAST)
        runs.append((m.history.train_loss, m.instantiate(cohort.hide("b")).impute(n_draws=20)))
    assert runs[0][0] == runs[1][0]
    xr.testing.assert_identical(runs[0][1], runs[1][1])
    other = TwinModel(cohort.schema, latent_dim=2, default_spec=SPEC).fit(cohort, seed=8, **FAST)
    assert other.history.train_loss != runs[0][0]


def test_fit_leaves_global_rng_and_threads_alone(cohort):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    TwinModel(cohort.schema, latent_dim=2, default_spec=SPEC).fit(cohort, seed=0, **FAST)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_history_warmup_and_early_stopping(cohort):
    m = TwinModel(cohort.schema, latent_dim=2, default_spec=SPEC)
    m.fit(cohort, seed=0, epochs=300, patience=5, kl_warmup_epochs=8, lr=0.02, progress=False)
    h = m.history
    assert h.kl_weight[:8] == pytest.approx([(k + 1) / 8 for k in range(8)])
    assert all(w == 1.0 for w in h.kl_weight[8:])
    assert h.stopped_early and len(h.train_loss) < 300
    assert len(h.validation_loss) == len(h.train_loss)
    after_warmup = h.validation_loss[7:]
    assert h.validation_loss[h.best_epoch] == min(after_warmup)
    assert len(h.train_loss) - 1 - h.best_epoch == 5
    assert h.train_loss[-1] < h.train_loss[0]
    assert "stopped early" in repr(m)


def test_a_training_shorter_than_the_warmup_still_ends_on_the_full_elbo(cohort):
    m = TwinModel(cohort.schema, latent_dim=2, default_spec=SPEC)
    m.fit(cohort, seed=0, epochs=10, patience=50, progress=False)  # default warm-up: 50 epochs
    h = m.history
    assert h.kl_weight[:5] == pytest.approx([(k + 1) / 5 for k in range(5)])
    assert h.kl_weight[4:] == [1.0] * 6
    assert 4 <= h.best_epoch <= 9  # chosen among full-ELBO epochs (was -1: never compared)
    assert h.validation_loss[h.best_epoch] == min(h.validation_loss[4:])


def test_without_validation_trains_all_epochs(cohort):
    m = TwinModel(cohort.schema, latent_dim=2, default_spec=SPEC)
    m.fit(cohort, seed=0, epochs=12, validation_fraction=0.0, progress=False)
    assert len(m.history.train_loss) == 12 and m.history.validation_loss == []
    assert m.history.expert_temperature == {"a": 1.0, "b": 1.0, "c": 1.0}


def test_progress_bar_is_shown(cohort, capsys):
    TwinModel(cohort.schema, latent_dim=2, default_spec=SPEC).fit(
        cohort, seed=0, epochs=3, progress=True
    )
    assert "fit" in capsys.readouterr().err


def test_modality_selection_and_specs(cohort):
    m = TwinModel(
        cohort.schema, modalities=["b", "a"], specs={"a": ModalitySpec(continuous="student_t")}
    )
    assert m.modalities == ["b", "a"] and m.specs["a"].continuous == "student_t"
    assert m.specs["b"] == ModalitySpec()
    with pytest.raises(KeyError, match="zzz"):
        TwinModel(cohort.schema, modalities=["zzz"])
    with pytest.raises(KeyError, match="c"):
        TwinModel(cohort.schema, modalities=["a"], specs={"c": ModalitySpec()})
    m.fit(cohort, seed=0, **FAST)
    ds = m.instantiate(cohort).impute(n_draws=10)
    assert "c" not in ds and "a" in ds
    assert "student_t 6" in repr(m)


def test_training_settings_are_checked(cohort):
    m = TwinModel(cohort.schema, latent_dim=2)
    with pytest.raises(TypeError, match="epoch"):
        m.fit(cohort, epoch=3)
    with pytest.raises(ValueError, match="subset_objective"):
        TrainingConfig(subset_objective="both")
    with pytest.raises(RuntimeError, match="not fitted"):
        m.instantiate(cohort)
    with pytest.raises(ValueError, match="likelihood"):
        ModalitySpec(continuous="laplace")
    with pytest.raises(NotImplementedError, match="image"):
        TwinModel(cohort.schema, default_spec=ModalitySpec(kind="image")).fit(cohort, **FAST)


def test_feature_never_observed_in_training_is_refused(cohort):
    hidden = cohort.hide("a", features=["a2"])
    with pytest.raises(ValueError, match="a2"):
        TwinModel(cohort.schema, latent_dim=2).fit(hidden, **FAST)


def test_cohort_without_the_models_modalities_is_refused_by_name(cohort):
    model = TwinModel(cohort.schema, latent_dim=2)
    with pytest.raises(
        ValueError, match=r"no modality \['a'\] of this model \(it has \['b', 'c'\]"
    ):
        model.fit(cohort.select(modalities=["b", "c"]), **FAST)


def test_joint_subset_objective_trains(cohort):
    m = TwinModel(cohort.schema, latent_dim=2, default_spec=SPEC)
    m.fit(cohort, seed=0, subset_objective="joint", **FAST)
    assert np.isfinite(m.history.train_loss).all()


def test_site_covariate_enters_the_decoders():
    cohort = simulate(n=200, seed=1, site_effect=3.0)
    train, test = cohort.split((0.7, 0.3), seed=0)
    m = TwinModel(cohort.schema, latent_dim=2, default_spec=SPEC, covariates=["site", "age"])
    m.fit(train, seed=0, epochs=150, patience=20, lr=5e-3, progress=False)
    ds = m.instantiate(test.hide("b")).impute(n_draws=100)
    site = test.covariates["site"].to_numpy()
    gap = ds["b"].values[site == "B"].mean() - ds["b"].values[site == "A"].mean()
    assert gap == pytest.approx(3.0, abs=0.6)
    no_covariates = twin.Cohort.from_tables({"a": test.data["a"].to_pandas()})
    with pytest.raises(KeyError, match="site"):
        m.instantiate(no_covariates)
    assert "decoder covariates: site, age" in repr(m)


def test_device_auto():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
