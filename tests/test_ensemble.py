"""TwinEnsemble: mixture of members, split-conformal interval scale, draws, persistence."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from model_helpers import simulate_clinical_omics

import twin
from twin.model import ModalitySpec, TwinEnsemble, TwinModel
from twin.model.ensemble_persistence import member_folder
from twin.model.interval_scale import MIN_SCORES, interval_scale_factor, interval_scores
from twin.model.predictive import mixture_predictive_draws, mixture_predictive_summary

SPEC = ModalitySpec(encoder_hidden=(32,), decoder_hidden=(32,))
FIT = {"epochs": 150, "patience": 30, "lr": 5e-3, "validation_fraction": 0.25}


@pytest.fixture(scope="module")
def cohorts():
    cohort = simulate_clinical_omics(n=400, seed=5)
    return cohort.split((0.7, 0.3), seed=0)


@pytest.fixture(scope="module")
def ensemble(cohorts):
    train, _ = cohorts
    ens = TwinEnsemble(train.schema, latent_dim=3, n_members=3, default_spec=SPEC)
    return ens.fit(train, seed=0, progress=False, **FIT)


def test_interval_scores_and_factor():
    centre, lower, upper = np.zeros(4), np.full(4, -1.0), np.full(4, 2.0)
    scores = interval_scores(np.array([0.5, -0.5, 4.0, np.nan]), centre, lower, upper)
    np.testing.assert_allclose(scores[:3], [0.25, 0.5, 2.0])
    assert np.isnan(scores[3])
    # a centre outside the interval: nothing short of infinity reaches the far side
    far = interval_scores(np.array([3.0]), np.array([2.5]), np.array([-1.0]), np.array([2.0]))
    assert far[0] == np.inf
    s = np.arange(1, 101) / 50.0  # 0.02 ... 2.0
    # split conformal: the ceil(101 * 0.9) = 91st smallest score, covering >= 90 %
    assert interval_scale_factor(s, 0.9) == pytest.approx(s[90])
    assert np.mean(s <= interval_scale_factor(s, 0.9)) >= 0.9
    assert interval_scale_factor(s, 0.9, conformal=False) == pytest.approx(np.quantile(s, 0.9))
    assert interval_scale_factor(s[: MIN_SCORES - 1], 0.9) == 1.0
    degenerate = np.r_[np.ones(10), np.full(5, np.inf)]
    assert interval_scale_factor(degenerate, 0.9) == 1.0
    with pytest.raises(ValueError, match="level"):
        interval_scale_factor(s, 1.5)


def test_members_differ_and_the_mixture_pools_them(ensemble, cohorts):
    _, test = cohorts
    twins = ensemble.instantiate(test.hide("omics"))
    assert len(twins) == len(test) and "3 members" in repr(twins)
    raw = twins.impute(n_draws=12000, calibrated=False, seed=1)
    per = [twins.member(k).impute(n_draws=4000, seed=2) for k in range(3)]
    means = np.stack([p["omics"].values for p in per])
    # members trained from different seeds predict differently ...
    spread = np.abs(means[0] - means.mean(0)).mean()
    assert spread > 0.02
    # ... and the mixture has their average mean (Monte Carlo error well below the
    # members' differences) and the law-of-total-variance sd
    assert np.abs(raw["omics"].values - means.mean(0)).mean() < 0.25 * spread
    var = (np.stack([p["omics_sd"].values for p in per]) ** 2).mean(0) + means.var(0)
    np.testing.assert_allclose(raw["omics_sd"].values, np.sqrt(var), rtol=0.05)
    latent = twins.latent()
    assert latent["mean"].dims == ("member", "individual", "latent")
    assert latent.sizes["member"] == 3


def test_mixture_moments_combine_the_members_exactly(ensemble, cohorts):
    """Same draws (same seed, one chunk): the mixture's mean is the members' average and
    its variance the law of total variance; quantiles are those of the pooled draws."""
    _, test = cohorts
    twins = ensemble.instantiate(test.hide("omics"))[:10]
    parts = twins._parts(3 * 40)
    cov = twins.data.covariates
    torch.manual_seed(11)
    single = [mixture_predictive_summary([p], cov, (0.05, 0.95))["omics"] for p in parts]
    torch.manual_seed(11)
    mix = mixture_predictive_summary(parts, cov, (0.05, 0.95))["omics"]
    means = np.stack([p.mean for p in single])
    second = np.stack([p.sd**2 + p.mean**2 for p in single]).mean(0)
    np.testing.assert_allclose(mix.mean, means.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mix.sd**2, second - means.mean(0) ** 2, rtol=1e-8, atol=1e-10)
    torch.manual_seed(11)
    _, draws = mixture_predictive_draws(parts, cov)
    np.testing.assert_allclose(mix.quantiles, np.quantile(draws["omics"], [0.05, 0.95], axis=0))


def test_calibrated_intervals_cover_held_out_values(ensemble, cohorts):
    _, test = cohorts
    table = ensemble.calibration
    assert list(table.index) == ["clinical", "omics"]
    assert (table["n"] > 50).all()
    assert (table["coverage_after"] >= 0.9).all()  # conformal: at least the level
    ds = ensemble.instantiate(test.hide("omics")).impute(seed=3)
    truth = test.values("omics")
    ok = ~np.isnan(truth)
    inside = (truth >= ds["omics_q05"].values) & (truth <= ds["omics_q95"].values)
    assert 0.82 <= inside[ok].mean() <= 0.97
    # a useful imputation: better than the training mean
    train, _ = cohorts
    mse = np.nanmean((truth - ds["omics"].values) ** 2)
    mse_mean = np.nanmean((truth - np.nanmean(train.values("omics"), 0)) ** 2)
    assert mse < 0.7 * mse_mean


def test_scale_applies_to_continuous_features_only(ensemble, cohorts):
    _, test = cohorts
    twins = ensemble.instantiate(test.hide("clinical"))
    cal = twins.impute(seed=4)
    raw = twins.impute(seed=4, calibrated=False)
    factor = ensemble.interval_scale["clinical"]
    assert factor != 1.0
    types = cal["clinical_type"].values
    cont, other = types == "continuous", types != "continuous"
    np.testing.assert_allclose(cal["clinical"].values, raw["clinical"].values)
    np.testing.assert_allclose(
        cal["clinical_sd"].values[:, cont], factor * raw["clinical_sd"].values[:, cont]
    )
    np.testing.assert_array_equal(
        cal["clinical_q95"].values[:, other], raw["clinical_q95"].values[:, other]
    )
    lo, hi = cal["clinical_q05"].values[:, cont], cal["clinical_q95"].values[:, cont]
    rlo, rhi = raw["clinical_q05"].values[:, cont], raw["clinical_q95"].values[:, cont]
    np.testing.assert_allclose(hi - lo, factor * (rhi - rlo), rtol=1e-9)
    # binary: a probability; categorical: level probabilities summing to 1
    smoker = list(cal["clinical_feature"].values).index("smoker")
    assert (
        (cal["clinical"].values[:, smoker] >= 0) & (cal["clinical"].values[:, smoker] <= 1)
    ).all()
    stage = list(cal["clinical_feature"].values).index("stage")
    np.testing.assert_allclose(cal["clinical_proba"].values[:, stage, :3].sum(-1), 1.0, atol=1e-6)


def test_observed_values_are_kept(ensemble, cohorts):
    _, test = cohorts
    ds = ensemble.instantiate(test).impute()
    obs = ds["omics_observed"].values
    truth = test.values("omics")
    np.testing.assert_array_equal(ds["omics"].values[obs], truth[obs])
    assert (ds["omics_sd"].values[obs] == 0).all()
    draws = ensemble.instantiate(test).sample(n_draws=6, seed=0)
    assert (draws["omics"].values[:, obs] == truth[obs]).all()


def test_sample_labels_members_and_spreads_by_the_scale(ensemble, cohorts):
    _, test = cohorts
    twins = ensemble.instantiate(test.hide("omics"))[:20]
    cal = twins.sample(n_draws=30, seed=5)
    raw = twins.sample(n_draws=30, seed=5, calibrated=False)
    assert cal.sizes == {
        "draw": 30,
        "individual": 20,
        "latent": 3,
        "clinical_feature": 5,
        "omics_feature": 12,
    }
    assert list(np.bincount(cal["member"].values)) == [10, 10, 10]
    factor = ensemble.interval_scale["omics"]
    np.testing.assert_allclose(
        cal["omics"].std("draw").values, factor * raw["omics"].std("draw").values, rtol=1e-9
    )
    with pytest.raises(ValueError, match="n_members"):
        twins.sample(n_draws=2)


def test_save_load_roundtrip_and_refusals(ensemble, cohorts, tmp_path):
    _, test = cohorts
    folder = ensemble.save(tmp_path / "ens")
    with pytest.raises(FileExistsError, match="overwrite"):
        ensemble.save(folder)
    loaded = TwinEnsemble.load(folder, schema=test.schema, device="cpu")
    assert loaded.n_members == 3 and loaded.interval_scale == ensemble.interval_scale
    assert loaded.calibration.equals(ensemble.calibration)
    a = ensemble.instantiate(test.hide("omics")).impute(seed=7)
    b = loaded.instantiate(test.hide("omics")).impute(seed=7)
    np.testing.assert_array_equal(a["omics_q95"].values, b["omics_q95"].values)
    with pytest.raises(ValueError, match="TwinEnsemble"):
        TwinModel.load(folder)
    with pytest.raises(ValueError, match="TwinModel.load"):
        TwinEnsemble.load(folder / "member_0")
    names = [f"gene{j}" for j in range(5)]
    omics = pd.DataFrame(test.values("omics")[:, :5], index=test.individuals, columns=names)
    other = twin.Cohort.from_tables({"omics": omics})
    with pytest.raises(ValueError, match="another schema"):
        TwinEnsemble.load(folder, schema=other.schema)
    assert loaded.seed == 0
    meta = json.loads((folder / "member_1" / "model.json").read_text())
    meta["schema"]["modalities"] = meta["schema"]["modalities"][:1]
    (folder / "member_1" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="member_1"):
        TwinEnsemble.load(folder)


def test_bad_arguments(cohorts):
    train, _ = cohorts
    with pytest.raises(ValueError, match="n_members"):
        TwinEnsemble(train.schema, n_members=0)
    ens = TwinEnsemble(train.schema, latent_dim=2, n_members=2, default_spec=SPEC)
    with pytest.raises(RuntimeError, match="not fitted"):
        ens.instantiate(train)
    with pytest.raises(ValueError, match="validation_fraction"):
        ens.fit(train, progress=False, validation_fraction=0.0)
    with pytest.raises(ValueError, match="level"):
        ens.fit(train, progress=False, level=0.0)
    with pytest.raises(TypeError, match="unknown training settings"):
        ens.fit(train, progress=False, epoch=5)
    ens.fit(train, progress=False, validation_fraction=0.0, calibrate=False, epochs=5)
    assert ens.calibration is None and set(ens.interval_scale.values()) == {1.0}
    # members train without expert tempering: the ensemble calibrates instead
    assert all(set(m.history.expert_temperature.values()) == {1.0} for m in ens.members)


def test_overwrite_replaces_the_whole_ensemble(ensemble, cohorts, tmp_path, monkeypatch):
    train, test = cohorts
    folder = ensemble.save(tmp_path / "ens")
    small = TwinEnsemble(train.schema, latent_dim=2, n_members=2, default_spec=SPEC)
    small.fit(train, seed=1, progress=False, epochs=5, validation_fraction=0.25)
    small.save(folder, overwrite=True)
    assert not member_folder(folder, 2).exists()  # the third member of the old one is gone
    again = TwinEnsemble.load(folder)
    assert again.n_members == 2 and again.latent_dim == 2 and again.seed == 1
    # a member replaced behind the ensemble's back is refused
    ensemble.members[0].save(member_folder(folder, 1), overwrite=True)
    with pytest.raises(ValueError, match="checksum|schema hash"):
        TwinEnsemble.load(folder)
    # an interrupted overwrite leaves nothing that loads (not a mix of old and new members)
    import twin.model.ensemble_persistence as persistence

    calls = []

    def failing_save(member, path, overwrite=False):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return TwinModel.save(member, path, overwrite=overwrite)

    monkeypatch.setattr(persistence, "save_model", failing_save)
    with pytest.raises(OSError, match="disk full"):
        ensemble.save(folder, overwrite=True)
    with pytest.raises(FileNotFoundError, match="model.json"):
        TwinEnsemble.load(folder)
    monkeypatch.undo()
    ensemble.save(folder, overwrite=True)
    shutil.rmtree(member_folder(folder, 2))
    with pytest.raises(FileNotFoundError, match="member_2"):
        TwinEnsemble.load(folder)


def test_members_trained_in_worker_processes_are_the_same(cohorts):
    """n_jobs=2 trains the members in two worker processes (saved and loaded back):
    same weights, histories, calibration and imputations as training them in turn."""
    train, test = cohorts
    fits = {}
    for n_jobs in (1, 2):
        ens = TwinEnsemble(train.schema, latent_dim=2, n_members=3, default_spec=SPEC)
        fits[n_jobs] = ens.fit(train, seed=3, progress=False, n_jobs=n_jobs, epochs=20)
    serial, parallel = fits[1], fits[2]
    for a, b in zip(serial.members, parallel.members, strict=True):
        sa, sb = a.module.state_dict(), b.module.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert a.history.train_loss == b.history.train_loss
    pd.testing.assert_frame_equal(serial.calibration, parallel.calibration)
    hidden = test.hide("omics")
    xa = serial.instantiate(hidden).impute(n_draws=50, seed=0)
    xb = parallel.instantiate(hidden).impute(n_draws=50, seed=0)
    for var in xa.data_vars:
        np.testing.assert_array_equal(xa[var].values, xb[var].values)


def test_worker_errors_reach_the_caller_and_n_jobs_is_checked(cohorts):
    from twin.model.member_training import MemberJob, fit_members, resolve_jobs

    train, _ = cohorts
    assert resolve_jobs(8, 3) == 3 and resolve_jobs(1, 3) == 1
    assert 1 <= resolve_jobs(-1, 100) <= 100
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n_jobs"):
            resolve_jobs(bad, 3)
    good = MemberJob(train.schema, 2, train, {"default_spec": SPEC}, {"epochs": 2})
    bad = MemberJob(train.schema, 2, train.select(list(train.individuals[:1])), {}, {"epochs": 2})
    with pytest.raises(ValueError, match="at least two individuals"):
        fit_members([good, bad], n_jobs=2, progress=False)
