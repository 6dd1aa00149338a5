"""Whole-block imputation benchmark: hide one omics block, impute it from the others.

For each dataset and each block ``B``: k-fold cross-validation by individual (fixed
seed, :meth:`twin.Cohort.kfold`); every method is fitted on the training fold only,
``B`` is hidden for the test fold, and the test fold's ``B`` is imputed from its other
blocks.  Methods:

``twin``
    :class:`twin.model.TwinModel` fitted once per fold on all training blocks; the test
    fold with ``B`` hidden is instantiated and ``impute()``-d.  Imported lazily, so the
    baselines run while the model package is incomplete.
``twin_ensemble``
    :class:`twin.model.TwinEnsemble` of ``--members`` models (same options), its
    intervals calibrated on the members' shared validation split; ``--jobs`` worker
    processes train the members (the same weights as one after the other).
``mean``
    Training mean; 90 % interval from the training 5 % / 95 % quantiles.
``knn``
    :class:`sklearn.neighbors.KNeighborsRegressor` on the standardized other blocks,
    ``k`` chosen by inner 5-fold CV; interval from the neighbours' empirical 5 % / 95 %
    quantiles.
``ridge``
    :class:`sklearn.linear_model.RidgeCV` (efficient leave-one-out over a log-spaced
    alpha grid) on the standardized other blocks; interval ``mean +- 1.645 sd`` with a
    per-feature residual sd from inner 5-fold CV on the training fold.
``mofa``
    MOFA+ (``mofapy2``, benchmark-only, optional) fitted on the training fold; test
    factors from their Gaussian posterior given the observed blocks, ``B`` predicted
    as ``W_B z`` with a Gaussian 90 % interval.  Recorded as unavailable when
    ``mofapy2`` is not installed.

Metrics (:func:`twin.evaluate.imputation_metrics`) are computed per fold with R²'s
total sum of squares around the *training-fold* mean (mean imputation scores exactly
0), then averaged over folds; the out-of-fold predictions are also pooled and scored
once with the centre at the pooled truth mean (``pooled_*``).

Usage::

    python benchmarks/impute.py                      # everything, 5 folds
    python benchmarks/impute.py --quick --methods mean ridge knn
    python benchmarks/impute.py --datasets rosmap --methods twin --latent-dim 16 --epochs 500

Data come from ``$TWIN_DATA`` or ``<repo>/../shared/data``; results go to
``benchmarks/results/impute.json`` (``--out``), written atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import data_root, git_commit, machine_info  # noqa: E402

DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rosmap": ("omics/rosmap", ("mrna", "methylation", "mirna")),
    "tcga": ("omics/tcga_breast", ("mrna", "mirna", "protein")),
}
METHODS = ("twin", "twin_ensemble", "mean", "knn", "ridge", "mofa")
TWIN_METHODS = ("twin", "twin_ensemble")
Z90 = 1.6448536269514722  # standard normal 95 % quantile
RIDGE_ALPHAS = np.logspace(-2, 6, 33)
KNN_GRID = (3, 5, 10, 20, 40)
INNER_FOLDS = 5


# ---------------------------------------------------------------------- data


def load_dataset(name: str, root: Path):
    """A :class:`twin.Cohort` with one static modality per omics block."""
    import twin

    folder, blocks = DATASETS[name]
    tables = {}
    for b in blocks:
        path = root / folder / f"{b}.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path} missing (set TWIN_DATA?)")
        df = pd.read_csv(path, index_col=0)
        df.index = df.index.astype(str)
        tables[b] = df.astype(float)
    return twin.Cohort.from_tables(tables), blocks


# ---------------------------------------------------------------------- predictions
@dataclass
class Prediction:
    """Imputed block of the test fold: mean and 90 % interval, (n_test, n_features)."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    sd: np.ndarray | None = None


def _standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-score with training statistics; missing inputs filled with the training mean."""
    mu = np.nanmean(x_train, axis=0)
    sd = np.nanstd(x_train, axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    zt = np.nan_to_num((x_train - mu) / sd)
    zs = np.nan_to_num((x_test - mu) / sd)
    return zt, zs


def fit_mean(x_train, y_train, x_test, seed: int, opts: dict) -> Prediction:
    """Training mean with the training 5 % / 95 % quantiles as interval."""
    n = x_test.shape[0]
    rep = lambda v: np.broadcast_to(v, (n, v.size)).copy()  # noqa: E731
    return Prediction(
        rep(np.nanmean(y_train, axis=0)),
        rep(np.nanquantile(y_train, 0.05, axis=0)),
        rep(np.nanquantile(y_train, 0.95, axis=0)),
    )


def fit_knn(x_train, y_train, x_test, seed: int, opts: dict) -> Prediction:
    """k nearest neighbours on standardized inputs; k by inner CV (or ``opts['knn_k']``)."""
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.neighbors import KNeighborsRegressor

    zt, zs = _standardize(x_train, x_test)
    k = opts.get("knn_k")
    if k is None:
        grid = [g for g in KNN_GRID if g < zt.shape[0] * (INNER_FOLDS - 1) // INNER_FOLDS]
        search = GridSearchCV(
            KNeighborsRegressor(),
            {"n_neighbors": grid},
            cv=KFold(INNER_FOLDS, shuffle=True, random_state=seed),
            scoring="neg_mean_squared_error",
        )
        search.fit(zt, y_train)
        k = int(search.best_params_["n_neighbors"])
    knn = KNeighborsRegressor(n_neighbors=k).fit(zt, y_train)
    idx = knn.kneighbors(zs, return_distance=False)
    neigh = y_train[idx]  # (n_test, k, n_features)
    pred = Prediction(
        neigh.mean(axis=1),
        np.quantile(neigh, 0.05, axis=1),
        np.quantile(neigh, 0.95, axis=1),
    )
    opts.setdefault("_chosen", {})["knn_k"] = k
    return pred


def fit_ridge(x_train, y_train, x_test, seed: int, opts: dict) -> Prediction:
    """RidgeCV on standardized inputs; residual sd per feature from inner CV."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict

    zt, zs = _standardize(x_train, x_test)
    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(zt, y_train)
    inner = cross_val_predict(
        RidgeCV(alphas=RIDGE_ALPHAS),
        zt,
        y_train,
        cv=KFold(INNER_FOLDS, shuffle=True, random_state=seed),
    )
    resid_sd = np.sqrt(np.mean((y_train - inner) ** 2, axis=0))
    mean = model.predict(zs)
    sd = np.broadcast_to(resid_sd, mean.shape).copy()
    opts.setdefault("_chosen", {})["ridge_alpha"] = float(model.alpha_)
    return Prediction(mean, mean - Z90 * sd, mean + Z90 * sd, sd)


def fit_mofa(
    blocks_train: list[np.ndarray],
    blocks_test: list[np.ndarray],
    target: int,
    seed: int,
    opts: dict,
) -> Prediction:
    """MOFA+ on the training fold; Gaussian posterior of the test factors; predict a block.

    ``blocks_train`` are all blocks of the training fold; ``blocks_test`` the test
    fold's blocks (the target's entry is ignored).  Every feature is z-scored with
    training statistics first: on raw ROSMAP values (variance ~0.01) MOFA's ARD priors
    switch every factor off and it predicts the mean.  With MOFA's prior
    ``z ~ N(0, I)``, standardized data ``x_v`` and per-feature noise precision ``tau_v``:
    ``Sigma = (I + sum_v W_v' T_v W_v)^-1``, ``mu = Sigma sum_v W_v' T_v x_v`` over the
    observed blocks, and ``y_B ~ N(m_B + W_B mu, diag(W_B Sigma W_B') + 1 / tau_B)``.
    """
    from mofapy2.run.entry_point import entry_point

    factors = int(opts.get("mofa_factors", 10))
    n = blocks_train[0].shape[0]
    centre = [np.nanmean(b, axis=0) for b in blocks_train]
    scale = [np.nanstd(b, axis=0) for b in blocks_train]
    scale = [np.where(s > 0, s, 1.0) for s in scale]
    blocks_train = [(b - c) / s for b, c, s in zip(blocks_train, centre, scale, strict=True)]
    blocks_test = [(b - c) / s for b, c, s in zip(blocks_test, centre, scale, strict=True)]
    names = [f"v{i}" for i in range(len(blocks_train))]
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        ent = entry_point()
        ent.set_data_options(scale_views=False)
        ent.set_data_matrix(
            [[b.copy()] for b in blocks_train],
            views_names=names,
            groups_names=["g"],
            samples_names=[[f"s{i}" for i in range(n)]],
            features_names=[
                [f"{v}_{j}" for j in range(b.shape[1])]
                for v, b in zip(names, blocks_train, strict=True)
            ],
        )
        ent.set_model_options(factors=factors)
        ent.set_train_options(
            iter=int(opts.get("mofa_iter", 1000)),
            seed=seed,
            convergence_mode=opts.get("mofa_convergence", "fast"),
            quiet=True,
        )
        ent.build()
        ent.run()
    w = ent.model.nodes["W"].getExpectation()
    tau = [np.asarray(t)[0] for t in ent.model.nodes["Tau"].getExpectation()]
    k = w[0].shape[1]
    prec = np.eye(k)
    rhs = np.zeros((blocks_test[0].shape[0], k))
    for v, x in enumerate(blocks_test):
        if v == target:
            continue
        xc = np.nan_to_num(x)
        prec += w[v].T @ (tau[v][:, None] * w[v])
        rhs += xc @ (tau[v][:, None] * w[v])
    cov = np.linalg.inv(prec)
    mu = rhs @ cov
    mean = centre[target] + scale[target] * (mu @ w[target].T)
    var = np.einsum("dk,kl,dl->d", w[target], cov, w[target]) + 1.0 / tau[target]
    sd = np.broadcast_to(scale[target] * np.sqrt(var), mean.shape).copy()
    return Prediction(mean, mean - Z90 * sd, mean + Z90 * sd, sd)


BASELINES: dict[str, Callable[..., Prediction]] = {
    "mean": fit_mean,
    "knn": fit_knn,
    "ridge": fit_ridge,
}


# ---------------------------------------------------------------------- twin model
def twin_options(args: argparse.Namespace) -> dict:
    """Keyword options for ``TwinModel(...)`` and ``fit(...)`` from the CLI."""
    ctor: dict = {"latent_dim": args.latent_dim}
    fit: dict = {"progress": False}
    spec: dict = {}
    if args.epochs is not None:
        fit["epochs"] = args.epochs
    for item in args.twin_opt or []:
        key, _, raw = item.partition("=")
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        if key.startswith("spec."):
            spec[key.removeprefix("spec.")] = val
            continue
        target = ctor if key.startswith("model.") else fit
        target[key.removeprefix("model.").removeprefix("fit.")] = val
    if spec:
        from twin.model.specs import ModalitySpec

        ctor["default_spec"] = ModalitySpec.from_dict(spec)
    return {"model": ctor, "fit": fit}


def _accepted(func: Callable, kwargs: dict) -> dict:
    """The subset of ``kwargs`` that ``func`` accepts (all, if it takes ``**kwargs``)."""
    params = inspect.signature(func).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def twin_fit(
    train, seed: int, options: dict, members: int | None = None, n_jobs: int = 1
) -> tuple[object, dict]:
    """Fit a TwinModel (or, with ``members``, a TwinEnsemble of that many, trained by
    ``n_jobs`` worker processes) on the training cohort; return it and the options it took."""
    from twin.model import TwinEnsemble, TwinModel  # lazy: the package may be incomplete

    ctor = _accepted(TwinModel.__init__, options["model"])
    if members is None:
        model = TwinModel(train.schema, **ctor)
    else:
        model = TwinEnsemble(train.schema, n_members=members, **ctor)
    fit = _accepted(model.fit, options["fit"])
    model.fit(train, seed=seed, **fit, **({} if members is None else {"n_jobs": n_jobs}))
    ignored = sorted(set(options["model"]) - set(ctor)) + sorted(set(options["fit"]) - set(fit))
    shown = {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in ctor.items()}
    return model, {"model": shown, "fit": fit, "ignored": ignored}


def twin_predict(model, test, block: str, refine_steps: int = 0) -> Prediction:
    """Instantiate the test fold with ``block`` hidden and impute it."""
    twins = model.instantiate(test.hide(block), refine_steps=refine_steps)
    ds = twins.impute()
    fdim = f"{block}_feature"
    feats = test.data[fdim].values
    ids = list(test.individuals)

    def pick(var: str) -> np.ndarray:
        return ds[var].sel(individual=ids, **{fdim: feats}).transpose("individual", fdim).values

    sd = pick(f"{block}_sd") if f"{block}_sd" in ds else None
    return Prediction(pick(block), pick(f"{block}_q05"), pick(f"{block}_q95"), sd)


# ---------------------------------------------------------------------- protocol
def score(truth: np.ndarray, pred: Prediction, train_mean: np.ndarray | None) -> dict:
    from twin.evaluate import imputation_metrics

    return imputation_metrics(
        truth, pred.mean, pred.lower, pred.upper, train_mean=train_mean, sd=pred.sd
    )


SUMMARY_KEYS = (
    "r2",
    "r2_per_feature_mean",
    "pearson_r",
    "pearson_r_per_feature_mean",
    "mae",
    "rmse",
    "coverage",
    "interval_width",
    "crps_gaussian",
)


def run_dataset(name: str, args: argparse.Namespace, root: Path) -> dict:
    """All methods × hidden blocks of one dataset."""
    cohort, blocks = load_dataset(name, root)
    folds = list(cohort.kfold(args.folds, seed=args.seed))
    methods = list(args.methods)
    out: dict = {
        "n_individuals": len(cohort),
        "blocks": {b: int(cohort.values(b).shape[1]) for b in blocks},
        "folds": [sorted(map(str, test.individuals)) for _, test in folds],
        "results": {b: {} for b in blocks},
    }
    # per (block, method): list of fold records and out-of-fold predictions
    records: dict = {b: {m: [] for m in methods} for b in blocks}
    oof: dict = {b: {m: [] for m in methods} for b in blocks}
    status: dict = {m: "ok" for m in methods}

    for f, (train, test) in enumerate(folds):
        twin_models: dict = {}
        twin_fit_s: dict = {}
        for m in TWIN_METHODS:
            if m not in methods or status[m] != "ok":
                continue
            members = args.members if m == "twin_ensemble" else None
            t0 = time.perf_counter()
            try:
                twin_models[m], used = twin_fit(
                    train, args.seed, twin_options(args), members, args.jobs
                )
                out[f"{m}_options"] = used
            except Exception as exc:  # noqa: BLE001 - record and go on with the baselines
                status[m] = f"unavailable: {type(exc).__name__}: {exc}"
                if args.verbose:
                    traceback.print_exc()
            twin_fit_s[m] = time.perf_counter() - t0
            calibration = getattr(twin_models.get(m), "calibration", None)
            if calibration is not None:
                out.setdefault(f"{m}_calibration", []).append(
                    json.loads(calibration.to_json(orient="index"))
                )
        for bi, b in enumerate(blocks):
            others = [o for o in blocks if o != b]
            x_train = np.hstack([train.values(o) for o in others])
            x_test = np.hstack([test.values(o) for o in others])
            y_train = train.values(b)
            y_test = test.values(b)
            train_mean = np.nanmean(y_train, axis=0)
            for m in methods:
                if status[m] != "ok":
                    continue
                opts = dict(vars(args))
                t0 = time.perf_counter()
                try:
                    if m in TWIN_METHODS:
                        pred = twin_predict(twin_models[m], test, b, args.refine_steps)
                        fit_s = twin_fit_s[m]
                    elif m == "mofa":
                        pred = fit_mofa(
                            [train.values(o) for o in blocks],
                            [test.values(o) for o in blocks],
                            bi,
                            args.seed,
                            opts,
                        )
                        fit_s = None
                    else:
                        pred = BASELINES[m](x_train, y_train, x_test, args.seed, opts)
                        fit_s = None
                except ImportError as exc:
                    status[m] = f"unavailable: {exc}"
                    continue
                except Exception as exc:  # noqa: BLE001
                    status[m] = f"failed: {type(exc).__name__}: {exc}"
                    if args.verbose:
                        traceback.print_exc()
                    continue
                elapsed = time.perf_counter() - t0
                rec = score(y_test, pred, train_mean)
                rec["fold"] = f
                if m in TWIN_METHODS:
                    rec["fit_s"] = fit_s
                    rec["predict_s"] = elapsed
                    hist = getattr(twin_models[m], "history", None)
                    if hist is not None:
                        rec["epochs_run"] = len(hist.train_loss)
                        rec["best_epoch"] = int(hist.best_epoch)
                else:
                    rec["fit_s"] = elapsed  # fit + predict, one block
                rec.update(opts.get("_chosen", {}))
                records[b][m].append(rec)
                oof[b][m].append((y_test, pred))
                if args.verbose:
                    print(
                        f"  {name} fold {f} hide {b:<12} {m:<6} R2 {rec['r2']:+.3f} "
                        f"cov {rec['coverage']:.2f} {elapsed:.1f}s",
                        flush=True,
                    )

    for b in blocks:
        for m in methods:
            recs = records[b][m]
            if status[m] != "ok" or len(recs) != len(folds):
                out["results"][b][m] = {"status": status[m] if status[m] != "ok" else "incomplete"}
                continue
            summary: dict = {"status": "ok"}
            for key in SUMMARY_KEYS:
                vals = [r.get(key) for r in recs]
                if all(v is not None for v in vals):
                    summary[key] = float(np.mean(vals))
                    summary[f"{key}_fold_sd"] = (
                        float(np.std(vals, ddof=1)) if len(vals) > 1 else None
                    )
            fit_times = [r["fit_s"] for r in recs if r.get("fit_s") is not None]
            summary["fit_s"] = float(np.mean(fit_times)) if fit_times else None
            if m in TWIN_METHODS:
                summary["fit_s_note"] = "one fit per fold shared by all hidden blocks"
                summary["predict_s"] = float(np.mean([r["predict_s"] for r in recs]))
            truth = np.vstack([t for t, _ in oof[b][m]])
            pooled = Prediction(
                *(
                    np.vstack([getattr(p, a) for _, p in oof[b][m]])
                    for a in ("mean", "lower", "upper")
                ),
                None if oof[b][m][0][1].sd is None else np.vstack([p.sd for _, p in oof[b][m]]),
            )
            pooled_scores = score(truth, pooled, None)
            for key in ("r2", "r2_per_feature_mean", "pearson_r", "coverage"):
                summary[f"pooled_{key}"] = pooled_scores.get(key)
            summary["per_fold"] = recs
            out["results"][b][m] = summary
    return out


# ---------------------------------------------------------------------- reporting
def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def table(results: dict) -> str:
    """A readable text table of the fold-averaged metrics."""
    head = (
        f"{'dataset':<8} {'hidden':<12} {'method':<6} {'R2(vw)':>8} {'R2(feat)':>9} "
        f"{'r(pool)':>8} {'r(feat)':>8} {'cov90':>6} {'width':>7} {'CRPS':>7} {'fit s':>7}"
    )
    lines = [head, "-" * len(head)]
    for ds, res in results.items():
        for b, per in res["results"].items():
            for m, s in per.items():
                if s.get("status") != "ok":
                    lines.append(f"{ds:<8} {b:<12} {m:<6} {s.get('status')}")
                    continue
                lines.append(
                    f"{ds:<8} {b:<12} {m:<6} {_fmt(s.get('r2'), '+8.3f')} "
                    f"{_fmt(s.get('r2_per_feature_mean'), '+9.3f')} "
                    f"{_fmt(s.get('pearson_r'), '8.3f')} "
                    f"{_fmt(s.get('pearson_r_per_feature_mean'), '8.3f')} "
                    f"{_fmt(s.get('coverage'), '6.3f')} {_fmt(s.get('interval_width'), '7.3f')} "
                    f"{_fmt(s.get('crps_gaussian'), '7.3f')} {_fmt(s.get('fit_s'), '7.2f')}"
                )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 folds, fewer epochs / iterations")
    p.add_argument("--latent-dim", type=int, default=16, help="TwinModel latent_dim")
    p.add_argument("--members", type=int, default=5, help="models in twin_ensemble")
    p.add_argument(
        "--jobs", type=int, default=1, help="worker processes training twin_ensemble's members"
    )
    p.add_argument(
        "--refine-steps",
        type=int,
        default=0,
        help="per-individual refinement of the twins' posterior (instantiate(refine_steps=))",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="TwinModel.fit epochs, if it takes them"
    )
    p.add_argument(
        "--twin-opt",
        action="append",
        metavar="KEY=VALUE",
        help="extra TwinModel option (JSON value); 'model.KEY' goes to the constructor, "
        "'spec.KEY' to every modality's ModalitySpec, anything else to fit(); repeatable",
    )
    p.add_argument("--knn-k", type=int, default=None, help="fix k instead of inner CV")
    p.add_argument("--mofa-factors", type=int, default=10)
    p.add_argument("--mofa-iter", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1, help="BLAS / torch threads")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "impute.json")
    p.add_argument("--verbose", "-v", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.folds = 2
        args.mofa_iter = min(args.mofa_iter, 200)
        if args.epochs is None:
            args.epochs = 100
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    from twin._util.atomic import write_text_atomic

    root = data_root()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()
    results = {}
    for name in args.datasets:
        print(f"[impute] {name}: methods {' '.join(args.methods)}, {args.folds} folds", flush=True)
        results[name] = run_dataset(name, args, root)
    report = {
        "benchmark": "impute",
        "protocol": (
            "k-fold CV by individual (twin.Cohort.kfold, seed); per hidden block B every "
            "method is fitted on the training fold and imputes B of the test fold from its "
            "other blocks; metrics per fold (R2 total sum of squares around the training-fold "
            "mean), averaged over folds; pooled_* = out-of-fold predictions scored once "
            "(centre: pooled truth mean); 90% intervals"
        ),
        "started": started,
        "wall_s": time.perf_counter() - t0,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "seeds": {"folds": args.seed, "methods": args.seed},
        "data_root": str(root),
        "git": git_commit(),
        "machine": machine_info("sklearn", "torch", "pyro", "mofapy2"),
        "ridge_alphas": RIDGE_ALPHAS.tolist(),
        "knn_grid": list(KNN_GRID),
        "results": results,
    }
    text = json.dumps(report, indent=2, default=float, allow_nan=False)
    write_text_atomic(args.out, text + "\n", overwrite=True)
    os.chmod(args.out, 0o644)  # mkstemp creates 0600; results are meant to be shared
    print(table(results))
    print(f"[impute] wrote {args.out} in {report['wall_s']:.0f}s")
    return report


if __name__ == "__main__":
    main()
