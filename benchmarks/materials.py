"""Materials twins benchmark: concrete strength over age, NIMS steel properties, inverse design.

Concrete (``materials/concrete/concrete.csv``, UCI, CC BY 4.0), read with
:func:`twin.materials.read_concrete` (defaults: 340 mixes, conflicting duplicates
skipped).  5-fold cross-validation **by mix** (:meth:`twin.Cohort.kfold`, seed 0:
the individuals are mixes, so no mix has rows on both sides: GroupKFold by
``mix_id``).  Every method is fitted on the training mixes only; inner choices
(twin configuration, gradient-boosting settings, interval widths) use inner
cross-validation by mix inside the training fold.

Tasks
    ``fc28_from_mix``: the 28-day strength of held-out mixes tested at 28 days, from
    the mix alone.
    ``curve_from_early``: held-out mixes tested at two or more ages; the strength at
    the earliest tested age is given with the mix, every later tested age is predicted
    (at its true age: 7, 28, 56, 91, 100, 120, 270, 360 days, ...).  Also reported:
    the same targets predicted from the mix alone (no update), to show the gain.

Methods
    ``twin``: :func:`twin.materials_twins.concrete_twin` (static twin of ``mix`` and
    ``strength_at_age``: strength at the canonical ages 3 ... 365 d); configuration
    chosen among ``TWIN_GRID`` by inner 3-fold CV on the training fold (inner MAE of
    the 28-day strength from the mix, one member per configuration), then fitted as an
    ensemble of ``--twin-members`` (default 5) members (``n_members``: the mixture of
    the members' predictives); ``twin_1member`` is its first member alone, the plain
    one-model twin, side by side.  Task 1: ``predict`` from the mix, 90 %
    interval ``q05``–``q95``.  Task 2: the earliest measurement is observed (its
    canonical age feature) and :meth:`~twin.materials_twins.PropertyTwinModel.curve`
    gives every later age (log-age interpolation of joint draws).  An earliest age
    with no canonical feature (1 day: 2 mixes) cannot be observed: the twin then
    predicts from the mix alone.
    ``twin_gbm`` (not in the default ``--methods``): the twin on a regression mean
    (``mean_model``, :class:`~twin.materials_twins.PropertyMean`): gradient boosting
    with the settings the ``gbm`` baseline chose in the fold (``GBM_DEFAULT`` without
    it) on rows (mix, log age), cross-fitted, and a small latent model
    (``DEVIATION_MODELS``) of the mixes' deviations from it; the same two tasks
    (``twin_gbm_mix_only``: the curve without the early test).  Run it with
    ``--methods gbm twin_gbm --out benchmarks/results/materials_twin_gbm.json``.
    ``rf``: random forest, 500 trees, on rows (mix features, age); task 2: plus the
    earliest age and its strength as features (trained on training mixes with two or
    more ages, on the ages after their earliest).
    ``gbm``: gradient boosting (sklearn), the same features; learning rate and depth
    chosen by inner 5-fold CV by mix.
    ``law``: CEB-FIP strength-gain law ``fc(t) = fc28 exp(s (1 - sqrt(28 / t)))``;
    ``s = a + b * scm`` with ``scm`` = (slag + fly ash) / binder, ``a, b`` fitted with
    ``scipy.optimize.least_squares`` (soft-L1 loss, log ratios) on training mixes
    tested at 28 days and another age.  Task 1: ``fc28`` from a 500-tree random
    forest on the mix trained on every training mix's 28-day-equivalent strength
    (each observation divided by the law's gain at its age, averaged per mix).
    Task 2: ``fc28`` anchored on the early measurement,
    ``fc28 = y0 / exp(s (1 - sqrt(28 / t0)))``.
    Baseline 90 % intervals: prediction + the 5 % / 95 % quantiles of out-of-fold
    residuals of the same task from inner 5-fold CV by mix on the training fold
    (split-conformal style).

NIMS steels (``materials/nims_fatigue/nims_fatigue.csv``, GPL-3, read by
:func:`twin.materials.read_nims`): 5-fold CV **by heat**, seed 0: the 360 rows are 120
heats (one composition each) tempered at three temperatures, so folds of rows would
put the same heat on both sides.  Inputs:
composition, processing, inclusions; outputs: fatigue, tensile, fracture strength,
hardness.  ``twin``: :func:`twin.materials_twins.steel_twin` (default configuration,
not tuned); ``ridge``: ``RidgeCV`` on standardised inputs per property; ``rf``: 500
trees per property; baseline intervals as above.  Settings: all four properties from
the inputs; then one property measured (tensile strength; hardness) and the other
three predicted: the twin observes it, the baselines get it as an extra input.
``twin_rf`` (not in the default ``--methods``): the steel twin on a random-forest mean
(500 trees per property, cross-fitted by heat: ``mean_groups``) with a small latent model
of the deviations; the same settings.

Inverse design: the twin fitted on all concrete mixes (the configuration the concrete
part's inner CV chose most often, ``--design-config auto``; ``--twin-members``
members) is asked
for the mix of minimum cement content reaching 30 / 40 / 50 MPa at 28 days with
probability 0.9 (bounds: the data's range of each component).  Reported: the mix, the
twin's forward prediction and probability (fresh draws), an independently trained twin
(seed 1, same number of members: how much the probability depends on training) and a
500-tree random forest on (mix, age) as outside checks, and the five nearest real mixes
(standardised distance) with their measured 28-day strengths.

Usage::

    python benchmarks/materials.py                  # everything (~1 h on 2 CPU cores)
    python benchmarks/materials.py --parts concrete --folds 5
    python benchmarks/materials.py --quick          # smoke test: never for reported numbers

Data: ``$TWIN_DATA`` or ``<repo>/../shared/data``.  Results:
``benchmarks/results/materials.json`` (``--out``), written atomically.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import data_root, git_commit, machine_info  # noqa: E402

Z90 = (0.05, 0.95)

#: Twin configurations compared by inner CV (concrete).
TWIN_GRID: dict[str, dict] = {
    "ld8_h256x2_ard": {
        "latent_dim": 8,
        "hidden": (256, 256),
        "decoder_weights": "ard",
        "training": {"modality_dropout": 0.5},
    },
    "ld8_h256x2_point": {
        "latent_dim": 8,
        "hidden": (256, 256),
        "decoder_weights": "point",
        "training": {"modality_dropout": 0.5},
    },
    "ld8_h256x2_point_md0.7": {
        "latent_dim": 8,
        "hidden": (256, 256),
        "decoder_weights": "point",
        "training": {"modality_dropout": 0.7},
    },
    # inputs in the property decoder (PropertyTwinModel(conditional=True)); not in the
    # automatic selection: its latent goes unused on concrete (posterior sd of z stays
    # 1.00 with every age observed), so the early measurement cannot update it
    "cond_ld4_h256x2_point": {
        "conditional": True,
        "select": False,
        "latent_dim": 4,
        "hidden": (256, 256),
        "decoder_weights": "point",
        "training": {},
    },
}
GBM_GRID = [{"learning_rate": lr, "max_depth": d} for lr in (0.05, 0.1) for d in (3, 5)]


# ---------------------------------------------------------------------- helpers
def metrics(y: np.ndarray, pred: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict:
    """MAE, RMSE, coverage and mean width of the 90 % interval."""
    y, pred, lo, hi = (np.asarray(a, dtype=float) for a in (y, pred, lo, hi))
    if not np.isfinite(pred).all():
        raise ValueError("non-finite predictions")
    err = pred - y
    return {
        "n": int(len(y)),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "coverage90": float(np.mean((y >= lo) & (y <= hi))),
        "width90": float(np.mean(hi - lo)),
    }


def summarise(per_fold: list[dict], pooled: dict) -> dict:
    keys = ("mae", "rmse", "coverage90", "width90")
    out = {"pooled": pooled}
    for k in keys:
        vals = [f[k] for f in per_fold]
        out[f"fold_mean_{k}"] = float(np.mean(vals))
        out[f"fold_sd_{k}"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return out


def residual_interval(resid: np.ndarray) -> tuple[float, float]:
    """5 % and 95 % quantiles of out-of-fold residuals (truth - prediction)."""
    return float(np.quantile(resid, Z90[0])), float(np.quantile(resid, Z90[1]))


def group_folds(groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner folds by group (mix): row positions of train and test."""
    uniq = np.unique(groups)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    out = []
    for part in np.array_split(uniq[perm], k):
        test = np.isin(groups, part)
        out.append((np.flatnonzero(~test), np.flatnonzero(test)))
    return out


# ---------------------------------------------------------------------- concrete data
def concrete_rows(cohort) -> pd.DataFrame:
    """One row per strength observation: mix id, mix features, age, strength."""
    long = cohort.to_long("strength")
    mix = pd.DataFrame(
        cohort.values("mix"), index=cohort.individuals, columns=cohort.features("mix")["name"]
    )
    rows = mix.loc[long["individual"]].reset_index(drop=True)
    rows.insert(0, "mix_id", long["individual"].to_numpy())
    rows["age"] = long["t"].to_numpy(dtype=float)
    rows["strength"] = long["value"].to_numpy(dtype=float)
    # replicate specimens (duplicates="replicates") are averaged per (mix, age)
    return rows.groupby(["mix_id", "age"], as_index=False, sort=True).mean()


def early_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows after each mix's earliest tested age, with that age (t0) and strength (y0)."""
    first = rows.sort_values("age").groupby("mix_id").first()[["age", "strength"]]
    first.columns = ["t0", "y0"]
    out = rows.join(first, on="mix_id")
    return out[out["age"] > out["t0"]].reset_index(drop=True)


MIX_FEATURES = [
    "cement",
    "blast_furnace_slag",
    "fly_ash",
    "water",
    "superplasticizer",
    "coarse_aggregate",
    "fine_aggregate",
    "binder",
    "water_cement_ratio",
    "water_binder_ratio",
]


def make_rf(seed: int):
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=500, random_state=seed, n_jobs=2)


def make_gbm(seed: int, learning_rate: float, max_depth: int):
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(
        n_estimators=600,
        learning_rate=learning_rate,
        max_depth=max_depth,
        subsample=0.8,
        random_state=seed,
    )


def oof_predictions(
    make: Callable, x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int, k: int = 5
) -> np.ndarray:
    pred = np.full(len(y), np.nan)
    for tr, te in group_folds(groups, k, seed):
        pred[te] = make().fit(x[tr], y[tr]).predict(x[te])
    return pred


def choose_gbm(x, y, groups, seed: int, mask: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """GBM settings with the lowest inner-CV MAE (on ``mask`` rows) and their OOF predictions."""
    best, best_mae, best_oof = None, np.inf, None
    sel = np.ones(len(y), bool) if mask is None else mask
    for cfg in GBM_GRID:
        oof = oof_predictions(lambda c=cfg: make_gbm(seed, **c), x, y, groups, seed)
        mae = float(np.mean(np.abs(oof[sel] - y[sel])))
        if mae < best_mae:
            best, best_mae, best_oof = cfg, mae, oof
    return best, best_oof


# ---------------------------------------------------------------------- strength-gain law
def scm_fraction(frame: pd.DataFrame) -> np.ndarray:
    binder = frame["binder"].to_numpy(dtype=float)
    scm = frame["blast_furnace_slag"].to_numpy(dtype=float) + frame["fly_ash"].to_numpy(dtype=float)
    return np.where(binder > 0, scm / np.where(binder > 0, binder, 1.0), 0.0)


def law_gain(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.exp(s * (1.0 - np.sqrt(28.0 / np.asarray(t, dtype=float))))


class StrengthLaw:
    """CEB-FIP strength gain ``fc(t) = fc28 exp(s (1 - sqrt(28/t)))``, fitted with scipy.

    ``kind="scm"``: one ``s = a + b * scm`` for all mixes (``scm`` = (slag + fly ash) /
    binder), fitted by ``scipy.optimize.least_squares`` (soft-L1) on log strength
    ratios to the 28-day strength.  ``kind="mix"``: ``(fc28, s)`` fitted per training
    mix tested at two or more ages (``scipy.optimize.least_squares`` on log strength,
    ``s`` bounded to [0, 2]); a 500-tree random forest on the mix predicts ``s`` for
    other mixes.
    """

    def __init__(self, kind: str = "mix", seed: int = 0):
        self.kind, self.seed = kind, seed

    def fit(self, rows: pd.DataFrame) -> StrengthLaw:
        from scipy.optimize import least_squares

        at28 = rows[rows["age"] == 28].set_index("mix_id")["strength"]
        other = rows[(rows["age"] != 28) & rows["mix_id"].isin(at28.index)]
        ratio = np.log(other["strength"].to_numpy() / at28.loc[other["mix_id"]].to_numpy())
        g = 1.0 - np.sqrt(28.0 / other["age"].to_numpy(dtype=float))
        scm = scm_fraction(other)

        def resid(p: np.ndarray) -> np.ndarray:
            return (p[0] + p[1] * scm) * g - ratio

        sol = least_squares(resid, x0=np.array([0.25, 0.0]), loss="soft_l1", f_scale=0.1)
        self.a, self.b = (float(v) for v in sol.x)
        self.n_obs = int(len(ratio))
        self.s_fit = pd.Series(dtype=float)
        if self.kind == "mix":
            fits = {}
            for mix_id, grp in rows.groupby("mix_id"):
                if grp["age"].nunique() < 2:
                    continue
                t = grp["age"].to_numpy(dtype=float)
                y = np.log(grp["strength"].to_numpy(dtype=float))
                gi = 1.0 - np.sqrt(28.0 / t)

                def res(p: np.ndarray, gi=gi, y=y) -> np.ndarray:
                    return p[0] + p[1] * gi - y

                s0 = float(self.a + self.b * scm_fraction(grp.iloc[:1])[0])
                sol = least_squares(
                    res, x0=np.array([y.mean(), s0]), bounds=([-np.inf, 0.0], [np.inf, 2.0])
                )
                fits[mix_id] = float(sol.x[1])
            self.s_fit = pd.Series(fits)
            mixes = rows.groupby("mix_id")[MIX_FEATURES].first().loc[self.s_fit.index]
            self.s_model = make_rf(self.seed).fit(
                mixes.to_numpy(dtype=float), self.s_fit.to_numpy()
            )
        return self

    def s(self, frame: pd.DataFrame) -> np.ndarray:
        if self.kind == "scm":
            return self.a + self.b * scm_fraction(frame)
        return self.s_model.predict(frame[MIX_FEATURES].to_numpy(dtype=float))

    def fc28_equivalent(self, rows: pd.DataFrame) -> pd.Series:
        """Per mix: mean of strength / gain(age) over its observations (fitted s where known)."""
        s = self.s(rows)
        if len(self.s_fit):
            known = self.s_fit.reindex(rows["mix_id"]).to_numpy()
            s = np.where(np.isfinite(known), known, s)
        eq = rows["strength"].to_numpy() / law_gain(s, rows["age"].to_numpy())
        return pd.Series(eq, index=rows["mix_id"].to_numpy()).groupby(level=0).mean()


# ---------------------------------------------------------------------- concrete methods
def twin_model(cfg: dict, device: str, n_members: int = 1):
    import twin
    from twin.materials_twins import concrete_twin

    spec = twin.ModalitySpec(
        encoder_hidden=cfg["hidden"],
        decoder_hidden=cfg["hidden"],
        decoder_weights=cfg.get("decoder_weights", "ard"),
    )
    return concrete_twin(
        latent_dim=cfg["latent_dim"],
        default_spec=spec,
        conditional=cfg.get("conditional", False),
        increasing=cfg.get("increasing", True),
        n_members=n_members,
        device=device,
    )


def twin_fit(cfg: dict, cohort, seed: int, device: str, epochs: int | None, n_members: int = 1):
    settings = dict(cfg["training"])
    if epochs is not None:
        settings["epochs"] = epochs
    return twin_model(cfg, device, n_members).fit(cohort, seed=seed, **settings)


#: Gradient-boosting settings of ``twin_gbm`` when the ``gbm`` baseline did not choose them.
GBM_DEFAULT = {"learning_rate": 0.05, "max_depth": 5}

#: Latent models of the deviations of the twins on a regression mean, by data set.
#: Concrete (``twin_gbm``): one factor with a linear decoder and Student-t noise --
#: a mix that is stronger than the mean at one age is stronger at every age, and the
#: early test moves that one factor (pooled later-age MAE with the early test, 5-fold
#: CV: 3.46 MPa against 3.64 with the NIMS setting below).  NIMS (``twin_rf``): two
#: dimensions and one hidden layer of 64.
DEVIATION_MODELS: dict[str, dict] = {
    "concrete": {
        "latent_dim": 1,
        "encoder_hidden": (64,),
        "decoder_hidden": (),
        "continuous": "student_t",
    },
    "nims": {"latent_dim": 2, "encoder_hidden": (64,), "decoder_hidden": (64,)},
}


def deviation_model_options(dataset: str) -> dict:
    """``latent_dim`` and ``default_spec`` of a twin on a regression mean for ``dataset``."""
    import twin

    spec = dict(DEVIATION_MODELS[dataset])
    latent_dim = spec.pop("latent_dim")
    return {"latent_dim": latent_dim, "default_spec": twin.ModalitySpec(**spec)}


def gbm_mean_twin(cfg: dict, seed: int, device: str):
    """Concrete twin whose mean is gradient boosting on (mix, log age) with ``cfg``."""
    from twin.materials_twins import concrete_twin

    return concrete_twin(
        mean_model=lambda: make_gbm(seed, **cfg),
        device=device,
        **deviation_model_options("concrete"),
    )


def first_member(model):
    """The one-member twin of an ensemble's first member (same seed as a plain fit)."""
    single = copy.copy(model)
    single.members, single.n_members = model.members[:1], 1
    return single


def choose_twin(train, seed: int, device: str, epochs: int | None, k: int = 3) -> tuple[str, dict]:
    """Twin configuration with the lowest inner-CV MAE of the 28-day strength from the mix."""
    scores = {}
    for name, cfg in TWIN_GRID.items():
        if not cfg.get("select", True):
            continue
        errs = []
        for inner_tr, inner_te in train.kfold(k, seed=seed + 100):
            model = twin_fit(cfg, inner_tr, seed, device, epochs)
            pred = model.predict(inner_te.select(modalities=["mix"]), n_draws=200, seed=seed)
            y = model.output_frame(inner_te)["fc_28d"].to_numpy()
            ok = np.isfinite(y)
            errs.append(np.abs(pred["mean"].sel(property="fc_28d").values[ok] - y[ok]))
        scores[name] = float(np.mean(np.concatenate(errs)))
    best = min(scores, key=scores.get)
    return best, scores


def concrete_fold(train, test, seed: int, args) -> dict:
    """All concrete methods on one outer fold; returns predictions per task and method."""

    out: dict = {"fc28": {}, "curve": {}, "info": {}, "shape": {}}
    rows_tr, rows_te = concrete_rows(train), concrete_rows(test)
    groups = rows_tr["mix_id"].to_numpy()
    x_tr = rows_tr[[*MIX_FEATURES, "age"]].to_numpy(dtype=float)
    y_tr = rows_tr["strength"].to_numpy(dtype=float)
    at28_tr = rows_tr["age"].to_numpy() == 28

    # task 1 targets: held-out mixes tested at 28 days
    t1 = rows_te[rows_te["age"] == 28].reset_index(drop=True)
    x1 = t1[[*MIX_FEATURES, "age"]].to_numpy(dtype=float)
    y1 = t1["strength"].to_numpy()
    out["fc28"]["truth"] = y1
    out["fc28"]["mix_id"] = t1["mix_id"].to_numpy()
    # task 2 targets: ages after the earliest, mixes with two or more ages
    e_tr, e_te = early_table(rows_tr), early_table(rows_te)
    x2_cols = [*MIX_FEATURES, "age", "t0", "y0"]
    y2 = e_te["strength"].to_numpy()
    out["curve"]["truth"] = y2
    out["curve"]["age"] = e_te["age"].to_numpy()
    out["curve"]["t0"] = e_te["t0"].to_numpy()
    out["curve"]["mix_id"] = e_te["mix_id"].to_numpy()

    def add(task: str, method: str, pred, lo, hi) -> None:
        out[task][method] = (np.asarray(pred, float), np.asarray(lo, float), np.asarray(hi, float))

    # ---- random forest on (mix, age)
    if "rf" in args.methods:
        t0 = time.perf_counter()
        rf = make_rf(seed).fit(x_tr, y_tr)
        oof = oof_predictions(lambda: make_rf(seed), x_tr, y_tr, groups, seed)
        a, b = residual_interval((y_tr - oof)[at28_tr])
        p = rf.predict(x1)
        add("fc28", "rf", p, p + a, p + b)
        # no update: the same forest at the later ages
        p = rf.predict(e_te[[*MIX_FEATURES, "age"]].to_numpy(dtype=float))
        late_tr = early_table(rows_tr)
        late_mask = rows_tr.set_index(["mix_id", "age"]).index.isin(
            late_tr.set_index(["mix_id", "age"]).index
        )
        a, b = residual_interval((y_tr - oof)[late_mask])
        add("curve", "rf_mix_only", p, p + a, p + b)
        # with the early measurement as features
        xe = e_tr[x2_cols].to_numpy(dtype=float)
        ye = e_tr["strength"].to_numpy()
        ge = e_tr["mix_id"].to_numpy()
        rf2 = make_rf(seed).fit(xe, ye)
        oof2 = oof_predictions(lambda: make_rf(seed), xe, ye, ge, seed)
        a, b = residual_interval(ye - oof2)
        p = rf2.predict(e_te[x2_cols].to_numpy(dtype=float))
        add("curve", "rf", p, p + a, p + b)
        out["info"]["rf_s"] = time.perf_counter() - t0

    # ---- gradient boosting
    if "gbm" in args.methods:
        t0 = time.perf_counter()
        cfg, oof = choose_gbm(x_tr, y_tr, groups, seed, at28_tr)
        gbm = make_gbm(seed, **cfg).fit(x_tr, y_tr)
        a, b = residual_interval((y_tr - oof)[at28_tr])
        p = gbm.predict(x1)
        add("fc28", "gbm", p, p + a, p + b)
        xe = e_tr[x2_cols].to_numpy(dtype=float)
        ye = e_tr["strength"].to_numpy()
        ge = e_tr["mix_id"].to_numpy()
        cfg2, oof2 = choose_gbm(xe, ye, ge, seed)
        gbm2 = make_gbm(seed, **cfg2).fit(xe, ye)
        a, b = residual_interval(ye - oof2)
        p = gbm2.predict(e_te[x2_cols].to_numpy(dtype=float))
        add("curve", "gbm", p, p + a, p + b)
        out["info"]["gbm_config"] = cfg
        out["info"]["gbm_config_early"] = cfg2
        out["info"]["gbm_s"] = time.perf_counter() - t0

    # ---- strength-gain law
    for kind, method in (("mix", "law"), ("scm", "law_scm")):
        if "law" not in args.methods:
            break
        t0 = time.perf_counter()

        def law_predictions(rows_fit: pd.DataFrame, frame1, frame2, kind=kind):
            law = StrengthLaw(kind, seed).fit(rows_fit)
            eq = law.fc28_equivalent(rows_fit)
            mixes = rows_fit.groupby("mix_id")[MIX_FEATURES].first().loc[eq.index]
            reg = make_rf(seed).fit(mixes.to_numpy(dtype=float), eq.to_numpy())
            p1 = reg.predict(frame1[MIX_FEATURES].to_numpy(dtype=float))
            s2 = law.s(frame2) if len(frame2) else np.zeros(0)
            fc28 = frame2["y0"].to_numpy() / law_gain(s2, frame2["t0"].to_numpy())
            p2 = fc28 * law_gain(s2, frame2["age"].to_numpy())
            return law, p1, p2

        # inner CV residuals for the intervals
        r1, r2 = [], []
        mix_ids = np.unique(groups)
        for itr, ite in group_folds(mix_ids, 5, seed):
            rt = rows_tr[rows_tr["mix_id"].isin(mix_ids[itr])]
            rv = rows_tr[rows_tr["mix_id"].isin(mix_ids[ite])]
            f1 = rv[rv["age"] == 28]
            f2 = early_table(rv)
            _, q1, q2 = law_predictions(rt, f1, f2)
            r1.append(f1["strength"].to_numpy() - q1)
            r2.append(f2["strength"].to_numpy() - q2)
        law, p1, p2 = law_predictions(rows_tr, t1, e_te)
        a, b = residual_interval(np.concatenate(r1))
        add("fc28", method, p1, p1 + a, p1 + b)
        a, b = residual_interval(np.concatenate(r2))
        add("curve", method, p2, p2 + a, p2 + b)
        out["info"][method] = {
            "a": law.a,
            "b": law.b,
            "n_ratios": law.n_obs,
            "n_mixes_fitted": int(len(law.s_fit)),
            "median_s_fitted": float(law.s_fit.median()) if len(law.s_fit) else None,
            "seconds": time.perf_counter() - t0,
        }

    # ---- twins
    mixes = test.select(modalities=["mix"])
    ages = np.unique(e_te["age"].to_numpy())
    ids = pd.Index(test.individuals.astype(str))
    row = ids.get_indexer(e_te["mix_id"])
    col = np.searchsorted(ages, e_te["age"].to_numpy())

    def twin_tasks(method: str, model, curve_methods: dict[str, bool]) -> None:
        """fc28 from the mix; the curve with the earliest measurement observed (True) or not."""
        pred = model.predict(mixes, n_draws=args.n_draws, seed=seed).sel(property="fc_28d")
        pos = pd.Index(pred["individual"].values).get_indexer(t1["mix_id"])
        add("fc28", method, *(pred[v].values[pos] for v in ("mean", "q05", "q95")))
        for name, early in curve_methods.items():
            observed = early_observed(model, e_te, ids, out["info"]) if early else None
            cur = model.curve(mixes, ages, observed, n_draws=args.n_draws, seed=seed)
            add("curve", name, *(cur[v].values[row, col] for v in ("mean", "q05", "q95")))
        out["shape"][method] = curve_falls(model, mixes, args.n_draws, seed)

    if "twin" in args.methods:
        t0 = time.perf_counter()
        if args.twin_config:
            name, scores = args.twin_config, {}
        else:
            name, scores = choose_twin(train, seed, args.device, args.epochs)
        ensemble = twin_fit(
            TWIN_GRID[name], train, seed, args.device, args.epochs, args.twin_members
        )
        out["info"]["twin_config"] = name
        out["info"]["twin_inner_mae"] = scores
        out["info"]["twin_epochs"] = [len(m.history.train_loss) for m in ensemble.members]
        # the ensemble ("twin") and, side by side, its first member alone
        twin_tasks("twin", ensemble, {"twin": True, "twin_mix_only": False})
        if args.twin_members > 1:
            twin_tasks("twin_1member", first_member(ensemble), {"twin_1member": True})
        out["info"]["twin_s"] = time.perf_counter() - t0

    if "twin_gbm" in args.methods:
        t0 = time.perf_counter()
        cfg = out["info"].get("gbm_config", GBM_DEFAULT)
        model = gbm_mean_twin(cfg, seed, args.device).fit(train, seed=seed)
        twin_tasks("twin_gbm", model, {"twin_gbm": True, "twin_gbm_mix_only": False})
        out["info"]["twin_gbm"] = {"gbm_config": cfg, "seconds": time.perf_counter() - t0}
    return out


#: Ages at which the shape of the predicted curves is checked (days).
SHAPE_AGES = (3.0, 7.0, 14.0, 28.0, 56.0, 90.0, 180.0, 270.0, 365.0)


def curve_falls(model, mixes, n_draws: int, seed: int) -> dict:
    """How often a twin's mean curve from the mix alone falls with age (by > 0.5 MPa, well
    above the Monte Carlo error of a mean of 1000 draws)."""
    cur = model.curve(mixes, np.array(SHAPE_AGES), None, n_draws=n_draws, seed=seed)
    step = np.diff(cur["mean"].values, axis=1)
    late = np.array(SHAPE_AGES[1:]) > 100
    return {
        "n_mixes": int(step.shape[0]),
        "n_falling_anywhere": int((step < -0.5).any(axis=1).sum()),
        "n_falling_after_100d": int((step[:, late] < -0.5).any(axis=1).sum()),
        "sum_365_minus_180": float((cur["mean"].values[:, -1] - cur["mean"].values[:, -3]).sum()),
    }


def early_observed(model, e_te: pd.DataFrame, ids: pd.Index, info: dict) -> pd.DataFrame:
    """Each held-out mix's earliest measurement at its canonical age feature (a twin's
    ``observed`` table); earliest ages with no canonical feature are counted and left out."""
    from twin.materials import canonical_ages
    from twin.materials.ages import age_feature

    first = e_te.groupby("mix_id")[["t0", "y0"]].first()
    obs = pd.DataFrame(np.nan, index=ids, columns=model.property_names)
    canon = canonical_ages(first["t0"].to_numpy())
    used = 0
    for mix_id, c, y0 in zip(first.index, canon, first["y0"], strict=True):
        if np.isfinite(c):
            obs.loc[mix_id, age_feature(c)] = y0
            used += 1
    info["twin_early_used"] = used
    info["twin_early_not_mappable"] = int(len(first) - used)
    return obs


def run_concrete(args, root: Path) -> dict:
    from twin.materials_twins import concrete_cohort

    path = root / "materials" / "concrete" / "concrete.csv"
    cohort = concrete_cohort(path)
    folds = []
    for k, (train, test) in enumerate(cohort.kfold(args.folds, seed=args.seed)):
        t0 = time.perf_counter()
        res = concrete_fold(train, test, args.seed, args)
        res["fold"] = k
        res["test_mixes"] = test.individuals.astype(str).tolist()
        folds.append(res)
        print(
            f"[materials] concrete fold {k}: {time.perf_counter() - t0:.0f}s "
            + " ".join(
                f"{m}={metrics(res['fc28']['truth'], *res['fc28'][m])['mae']:.2f}"
                for m in res["fc28"]
                if m not in ("truth", "mix_id")
            ),
            flush=True,
        )
    results: dict = {}
    for task in ("fc28", "curve"):
        methods = [m for m in folds[0][task] if m not in ("truth", "mix_id", "age", "t0")]
        results[task] = {}
        for m in methods:
            per = [metrics(f[task]["truth"], *f[task][m]) for f in folds]
            cat = [np.concatenate([f[task]["truth"] for f in folds])] + [
                np.concatenate([f[task][m][i] for f in folds]) for i in range(3)
            ]
            results[task][m] = {**summarise(per, metrics(*cat)), "per_fold": per}
    # curve task by age after the earliest
    truth = np.concatenate([f["curve"]["truth"] for f in folds])
    ages = np.concatenate([f["curve"]["age"] for f in folds])
    t0s = np.concatenate([f["curve"]["t0"] for f in folds])
    by_age = {}
    for label, sel in (
        ("age<=28", ages <= 28),
        ("28<age<=100", (ages > 28) & (ages <= 100)),
        ("age>100", ages > 100),
        ("t0=3", t0s == 3),
        ("t0=7", t0s == 7),
        ("t0>=14", t0s >= 14),
    ):
        by_age[label] = {
            m: metrics(
                truth[sel],
                *(np.concatenate([f["curve"][m][i] for f in folds])[sel] for i in range(3)),
            )
            for m in results["curve"]
        }
    results["curve_breakdown"] = by_age
    # shape of the twins' mean curves from the mix alone, pooled over folds
    shape: dict = {}
    for f in folds:
        for m, d in f["shape"].items():
            acc = shape.setdefault(m, dict.fromkeys(d, 0))
            for k, v in d.items():
                acc[k] += v
    for d in shape.values():
        d["share_falling_anywhere"] = d["n_falling_anywhere"] / d["n_mixes"]
        d["share_falling_after_100d"] = d["n_falling_after_100d"] / d["n_mixes"]
        d["mean_365_minus_180"] = d.pop("sum_365_minus_180") / d["n_mixes"]
    results["curve_shape"] = shape
    results["fold_info"] = [f["info"] for f in folds]
    results["n_mixes"] = int(len(cohort))
    results["age_mapping"] = cohort.attr_json("twin_age_mapping")
    best1 = min(
        (m for m in results["fc28"] if not m.startswith("twin")),
        key=lambda m: results["fc28"][m]["pooled"]["mae"],
        default=None,
    )
    best2 = min(
        (m for m in results["curve"] if m in ("rf", "gbm", "law", "law_scm")),
        key=lambda m: results["curve"][m]["pooled"]["mae"],
        default=None,
    )
    targets = {}
    for twin_method in ("twin", "twin_gbm"):  # the latent twin; the twin on a GBM mean
        tag = "" if twin_method == "twin" else f"{twin_method}_"
        if twin_method in results["fc28"] and best1:
            tw, bb = results["fc28"][twin_method]["pooled"], results["fc28"][best1]["pooled"]
            targets[f"{tag}fc28_within_10pct_of_best_baseline"] = {
                "best_baseline": best1,
                "ratio": tw["mae"] / bb["mae"],
                "met": bool(tw["mae"] <= 1.1 * bb["mae"]),
            }
            targets[f"{tag}fc28_twin_coverage_in_85_95"] = {
                "coverage": tw["coverage90"],
                "met": bool(0.85 <= tw["coverage90"] <= 0.95),
            }
        if twin_method in results["curve"] and best2:
            tw, bb = results["curve"][twin_method]["pooled"], results["curve"][best2]["pooled"]
            targets[f"{tag}curve_twin_beats_best_baseline_with_early"] = {
                "best_baseline": best2,
                "twin_mae": tw["mae"],
                "baseline_mae": bb["mae"],
                "met": bool(tw["mae"] < bb["mae"]),
            }
            targets[f"{tag}curve_twin_coverage_in_85_95"] = {
                "coverage": tw["coverage90"],
                "met": bool(0.85 <= tw["coverage90"] <= 0.95),
            }
    results["targets"] = targets
    return results


# ---------------------------------------------------------------------- NIMS
def run_nims(args, root: Path) -> dict:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from twin.materials import read_nims
    from twin.materials_twins import steel_twin

    path = root / "materials" / "nims_fatigue" / "nims_fatigue.csv"
    if not path.exists():
        return {"status": f"unavailable: {path} missing"}
    cohort = read_nims(path)
    props = ["fatigue_strength", "tensile_strength", "fracture_strength", "hardness"]
    settings = {
        "none": [],
        "tensile_observed": ["tensile_strength"],
        "hardness_observed": ["hardness"],
    }
    store: dict = {s: {} for s in settings}
    info = []
    heats = heat_ids(cohort)
    for k, (train, test) in enumerate(heat_folds(cohort, heats, args.folds, args.seed)):
        t0 = time.perf_counter()
        model = None
        if "twin" in args.methods:
            model = steel_twin(device=args.device, conditional=args.nims_conditional).fit(
                train, seed=args.seed, **({"epochs": args.epochs} if args.epochs else {})
            )
        mean_twin = None
        if "twin_rf" in args.methods:
            mean_twin = steel_twin(
                mean_model=lambda: RandomForestRegressor(500, random_state=args.seed, n_jobs=2),
                device=args.device,
                **deviation_model_options("nims"),
            ).fit(train, seed=args.seed, mean_groups=heat_ids(train))
        xtr = _nims_inputs(train)
        xte = _nims_inputs(test)
        ytr = _nims_outputs(train, props)
        yte = _nims_outputs(test, props)
        mu = np.nanmean(xtr, axis=0)
        xtr_f = np.where(np.isnan(xtr), mu, xtr)
        xte_f = np.where(np.isnan(xte), mu, xte)
        fold_info = {"fold": k}
        for setting, known in settings.items():
            targets = [p for p in props if p not in known]
            preds = {}
            if model is not None:
                preds["twin"] = model.predict(
                    test, observed=known or None, n_draws=args.n_draws, seed=args.seed
                )
                if known:  # the amortised posterior without refinement, for comparison
                    preds["twin_amortised"] = model.predict(
                        test, observed=known, n_draws=args.n_draws, seed=args.seed, refine_steps=0
                    )
            if mean_twin is not None:
                preds["twin_rf"] = mean_twin.predict(
                    test, observed=known or None, n_draws=args.n_draws, seed=args.seed
                )
            for p in targets:
                j = props.index(p)
                ok_tr, ok_te = np.isfinite(ytr[:, j]), np.isfinite(yte[:, j])
                extra_tr = [ytr[:, props.index(q)] for q in known]
                extra_te = [yte[:, props.index(q)] for q in known]
                xa = np.column_stack([xtr_f, *extra_tr]) if known else xtr_f
                xb = np.column_stack([xte_f, *extra_te]) if known else xte_f
                ok_tr &= np.isfinite(xa).all(1)
                ok_te &= np.isfinite(xb).all(1)
                y = yte[ok_te, j]
                entry = store[setting].setdefault(p, {"truth": []})
                entry["truth"].append(y)
                makers = {
                    "ridge": lambda: make_pipeline(
                        StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 30))
                    ),
                    "rf": lambda: RandomForestRegressor(500, random_state=args.seed, n_jobs=2),
                }
                for name, make in makers.items():
                    if name not in args.methods:
                        continue
                    g = np.arange(ok_tr.sum())
                    oof = oof_predictions(make, xa[ok_tr], ytr[ok_tr, j], g, args.seed)
                    a, b = residual_interval(ytr[ok_tr, j] - oof)
                    pr = make().fit(xa[ok_tr], ytr[ok_tr, j]).predict(xb[ok_te])
                    entry.setdefault(name, []).append((pr, pr + a, pr + b))
                for name, pred in preds.items():
                    sel = pred.sel(property=p)
                    entry.setdefault(name, []).append(
                        (
                            sel["mean"].values[ok_te],
                            sel["q05"].values[ok_te],
                            sel["q95"].values[ok_te],
                        )
                    )
        if model is not None:
            fold_info["twin_epochs"] = len(model.model.history.train_loss)
        fold_info["seconds"] = time.perf_counter() - t0
        info.append(fold_info)
        print(f"[materials] nims fold {k}: {fold_info['seconds']:.0f}s", flush=True)
    results: dict = {
        "n_steels": int(len(cohort)),
        "n_heats": int(len(np.unique(heats))),
        "protocol": "5-fold CV grouped by heat (identical composition), seed as given",
        "fold_info": info,
    }
    for setting, per_prop in store.items():
        results[setting] = {}
        for p, entry in per_prop.items():
            truth = np.concatenate(entry["truth"])
            res = {}
            for m in ("twin", "twin_amortised", "twin_rf", "ridge", "rf"):
                if m not in entry:
                    continue
                per = [metrics(t, *f) for t, f in zip(entry["truth"], entry[m], strict=True)]
                pooled = metrics(
                    truth, *(np.concatenate([f[i] for f in entry[m]]) for i in range(3))
                )
                pooled["r2"] = float(
                    1
                    - np.sum((truth - np.concatenate([f[0] for f in entry[m]])) ** 2)
                    / np.sum((truth - truth.mean()) ** 2)
                )
                res[m] = {**summarise(per, pooled), "per_fold": per}
            results[setting][p] = res
    return results


def heat_ids(cohort) -> np.ndarray:
    """One id per heat: rows with identical composition (each heat has 3 temperings)."""
    comp = pd.DataFrame(np.where(cohort.mask("composition"), cohort.values("composition"), np.nan))
    return comp.round(6).astype(str).agg("|".join, axis=1).factorize()[0]


def heat_folds(cohort, heats: np.ndarray, k: int, seed: int):
    """k-fold CV by heat (seeded): ``(train, test)`` cohorts."""
    uniq = np.unique(heats)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    for part in np.array_split(uniq[perm], k):
        test = np.isin(heats, part)
        yield cohort.select(~test), cohort.select(test)


def _nims_inputs(cohort) -> np.ndarray:
    return np.column_stack(
        [
            np.where(cohort.mask(m), cohort.values(m), np.nan)
            for m in ("composition", "processing", "inclusions")
        ]
    )


def _nims_outputs(cohort, props) -> np.ndarray:
    names = list(cohort.features("properties")["name"])
    vals = np.where(cohort.mask("properties"), cohort.values("properties"), np.nan)
    return vals[:, [names.index(p) for p in props]]


# ---------------------------------------------------------------------- inverse design
def run_design(args, root: Path) -> dict:
    from twin.materials_twins import concrete_cohort, inverse_design

    cohort = concrete_cohort(root / "materials" / "concrete" / "concrete.csv")
    name = args.design_config
    if name == "auto":  # the configuration the concrete folds' inner CV chose most often
        chosen = [
            f.get("twin_config") for f in args.results.get("concrete", {}).get("fold_info", [])
        ]
        chosen = [c for c in chosen if c in TWIN_GRID]
        if chosen:
            name = max(sorted(set(chosen)), key=chosen.count)
            source = f"chosen by {chosen.count(name)} of {len(chosen)} concrete folds"
        else:
            name = next(iter(TWIN_GRID))
            source = "first grid entry (no concrete fold results to choose from)"
    else:
        source = "--design-config"
    cfg = TWIN_GRID[name]
    t0 = time.perf_counter()
    members = args.twin_members
    model = twin_fit(cfg, cohort, args.seed, args.device, args.epochs, members)
    check = twin_fit(cfg, cohort, args.seed + 1, args.device, args.epochs, members)
    rows = concrete_rows(cohort)
    rf = make_rf(args.seed).fit(
        rows[[*MIX_FEATURES, "age"]].to_numpy(dtype=float), rows["strength"].to_numpy()
    )
    fit_s = time.perf_counter() - t0
    out = {
        "config": name,
        "config_source": source,
        "n_members": members,
        "fit_s": fit_s,
        "targets": {},
    }
    for target in args.design_targets:
        t0 = time.perf_counter()
        res = inverse_design(
            model,
            {"fc_28d": target},
            0.9,
            cost="cement",
            reference=cohort,
            n_candidates=args.design_candidates,
            n_iterations=args.design_iterations,
            seed=args.seed,
        )
        d = res.to_dict()
        d["seconds"] = time.perf_counter() - t0
        x = res.inputs.to_frame().T
        d["check_twin_seed1"] = {
            "probability": float(check.probability(x, {"fc_28d": target}, n_draws=4000, seed=7)[0]),
            "mean": float(
                check.predict(x, n_draws=2000, seed=7)["mean"].sel(property="fc_28d").values[0]
            ),
        }
        d["check_rf_28d"] = float(
            rf.predict(np.r_[x[MIX_FEATURES].to_numpy(dtype=float)[0], 28.0][None, :])[0]
        )
        out["targets"][f"{target:g}"] = d
        print(
            f"[materials] design {target:g} MPa: cement {res.inputs['cement']:.0f}, "
            f"P={res.probability:.3f}, {d['seconds']:.0f}s",
            flush=True,
        )
    return out


# ---------------------------------------------------------------------- report
def _f(v, spec=".2f") -> str:
    return "—" if v is None else format(v, spec)


def table(report: dict) -> str:
    lines = []
    con = report["results"].get("concrete")
    if con and "status" not in con:
        for task, title in (
            ("fc28", "28-day strength from the mix"),
            ("curve", "later ages from mix + earliest age"),
        ):
            lines.append(f"concrete: {title} (pooled over folds)")
            lines.append(f"  {'method':<16}{'n':>6}{'MAE':>8}{'RMSE':>8}{'cov90':>8}{'width':>8}")
            for m, r in sorted(con[task].items(), key=lambda kv: kv[1]["pooled"]["mae"]):
                p = r["pooled"]
                lines.append(
                    f"  {m:<16}{p['n']:>6}{p['mae']:>8.2f}{p['rmse']:>8.2f}{p['coverage90']:>8.3f}{p['width90']:>8.1f}"
                )
        for k, v in con["targets"].items():
            lines.append(
                f"  target {k}: {'met' if v['met'] else 'NOT met'} {json.dumps({a: b for a, b in v.items() if a != 'met'})}"
            )
    nims = report["results"].get("nims")
    if nims and "status" not in nims:
        for setting in ("none", "tensile_observed", "hardness_observed"):
            lines.append(f"nims: observed = {setting} (pooled MAE / cov90)")
            for p, res in nims[setting].items():
                cells = "  ".join(
                    f"{m} {_f(r['pooled']['mae'], '.1f')} / {_f(r['pooled']['coverage90'], '.2f')}"
                    for m, r in res.items()
                )
                lines.append(f"  {p:<20} {cells}")
    des = report["results"].get("design")
    if des and "status" not in des:
        lines.append("inverse design (min cement, P(fc_28d >= target) >= 0.9)")
        for t, d in des["targets"].items():
            near = d["nearest"] or []
            meas = ", ".join(_f(n.get("measured_fc_28d"), ".1f") for n in near)
            pr = d["prediction"]["fc_28d"]
            lines.append(
                f"  {t} MPa: cement {d['inputs']['cement']:.0f}, slag {d['inputs']['blast_furnace_slag']:.0f}, "
                f"fly ash {d['inputs']['fly_ash']:.0f}, water {d['inputs']['water']:.0f}, "
                f"w/b {d['inputs']['water_binder_ratio']:.2f}; twin mean {pr['mean']:.1f} "
                f"[{pr['q05']:.1f}, {pr['q95']:.1f}], P={d['probability']:.3f}; seed-1 twin P="
                f"{d['check_twin_seed1']['probability']:.3f}; RF {d['check_rf_28d']:.1f}; nearest measured: {meas}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--parts",
        nargs="+",
        default=["concrete", "nims", "design"],
        choices=["concrete", "nims", "design"],
    )
    ap.add_argument("--methods", nargs="+", default=["twin", "rf", "gbm", "law", "ridge"])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--nims-conditional",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="steel twin with the inputs in the property decoder (PropertyTwinModel conditional)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--epochs", type=int, default=None, help="twin epochs (default: DEFAULT_TRAINING)"
    )
    ap.add_argument(
        "--twin-config", default=None, choices=[None, *TWIN_GRID], help="skip the inner selection"
    )
    ap.add_argument(
        "--design-config",
        default="auto",
        choices=["auto", *TWIN_GRID],
        help="twin configuration of the design part (auto: the concrete folds' most chosen)",
    )
    ap.add_argument("--design-targets", nargs="+", type=float, default=[30.0, 40.0, 50.0])
    ap.add_argument("--design-candidates", type=int, default=1024)
    ap.add_argument("--design-iterations", type=int, default=20)
    ap.add_argument("--n-draws", type=int, default=1000)
    ap.add_argument(
        "--twin-members",
        type=int,
        default=5,
        help="ensemble members of the concrete and design twins (the inner selection fits one)",
    )
    ap.add_argument(
        "--twin-increasing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="latent concrete twin with strength non-decreasing in age (concrete_twin default)",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--quick", action="store_true", help="2 folds, 60 epochs: checks the script runs"
    )
    ap.add_argument("--fresh", action="store_true", help="drop results of parts not run now")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "materials.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.folds, args.epochs, args.n_draws, args.twin_members = 2, 60, 200, 2
        args.twin_config = args.twin_config or next(iter(TWIN_GRID))
        args.design_targets, args.design_candidates, args.design_iterations = [40.0], 256, 3
    if not args.twin_increasing:
        for cfg in TWIN_GRID.values():
            cfg["increasing"] = False
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from twin._util.atomic import write_text_atomic

    root = data_root()
    t0 = time.perf_counter()
    results = {}
    if args.out.exists() and not args.fresh:  # keep the parts not run this time
        try:
            results = json.loads(args.out.read_text()).get("results", {})
        except (OSError, ValueError):
            results = {}
    # the parts read each other's results as they stand now (this run's, else kept ones):
    # the design part's "auto" configuration comes from the concrete folds' choices
    args.results = results
    for part in args.parts:
        print(f"[materials] {part} ...", flush=True)
        fn = {"concrete": run_concrete, "nims": run_nims, "design": run_design}[part]
        try:
            results[part] = fn(args, root)
        except Exception as exc:  # noqa: BLE001 - keep the other parts' results
            import traceback

            traceback.print_exc()
            results[part] = {"status": f"failed: {exc!r}"}
    report = {
        "benchmark": "materials",
        "args": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "results"
        },
        "parts_run_now": list(args.parts),
        "twin_grid": {k: {**v, "hidden": list(v["hidden"])} for k, v in TWIN_GRID.items()},
        "gbm_grid": GBM_GRID,
        "results": results,
        "git": git_commit(),
        "machine": machine_info("sklearn", "scipy", "torch", "pyro"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": time.perf_counter() - t0,
    }
    text = json.dumps(report, indent=2, default=_json_default)
    write_text_atomic(args.out, text + "\n", overwrite=True)
    os.chmod(args.out, 0o644)
    print(table(report))
    print(f"[materials] wrote {args.out} in {report['wall_s']:.0f}s")
    return report


def _json_default(o):
    if isinstance(o, np.integer | np.floating):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(type(o))


if __name__ == "__main__":
    main()
