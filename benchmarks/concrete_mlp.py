"""How far a plain neural network gets on the concrete 28-day task (context for the twin).

The concrete twin's decoders are MLPs; gradient boosting beats them on this small table
(``benchmarks/materials.py``).  This script asks whether that gap belongs to the twin or
to neural networks on these data: a plain ``sklearn`` MLP regressor on rows (mix
features, log age) -> strength, trained for squared error with early stopping, on the
same outer folds (:meth:`twin.Cohort.kfold`, 5 folds by mix, seed 0) and scored on the
same targets (held-out mixes tested at 28 days), alone and as a 5-seed average.

Usage::

    python benchmarks/concrete_mlp.py          # ~3 min on 2 CPU cores

Data: ``$TWIN_DATA`` or ``<repo>/../shared/data``.  Results:
``benchmarks/results/concrete_mlp.json``, written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import data_root, git_commit, machine_info  # noqa: E402
from materials import MIX_FEATURES, concrete_rows  # noqa: E402


def features(rows) -> np.ndarray:
    x = rows[MIX_FEATURES].to_numpy(dtype=float)
    return np.c_[x, np.log(rows["age"].to_numpy(dtype=float))]


def make_mlp(seed: int, hidden: tuple[int, ...], alpha: float):
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        MLPRegressor(
            hidden_layer_sizes=hidden,
            alpha=alpha,
            max_iter=3000,
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=100,
            random_state=seed,
        ),
    )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--alpha", type=float, default=1e-3)
    ap.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "concrete_mlp.json"
    )
    args = ap.parse_args(argv)
    from twin._util.atomic import write_text_atomic
    from twin.materials_twins import concrete_cohort

    t0 = time.perf_counter()
    cohort = concrete_cohort(data_root() / "materials" / "concrete" / "concrete.csv")
    single, ensemble, n = [], [], []
    for train, test in cohort.kfold(args.folds, seed=args.seed):
        rows_tr, rows_te = concrete_rows(train), concrete_rows(test)
        at28 = rows_te[rows_te["age"] == 28]
        y = at28["strength"].to_numpy()
        preds = [
            make_mlp(args.seed + k, tuple(args.hidden), args.alpha)
            .fit(features(rows_tr), rows_tr["strength"].to_numpy())
            .predict(features(at28))
            for k in range(args.members)
        ]
        single.append(float(np.mean(np.abs(preds[0] - y))))
        ensemble.append(float(np.mean(np.abs(np.mean(preds, axis=0) - y))))
        n.append(len(y))
    w = np.asarray(n) / np.sum(n)
    report = {
        "benchmark": "concrete_mlp",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "task": "fc28_from_mix (held-out mixes tested at 28 days), MAE in MPa",
        "per_fold": {"n": n, "mlp_1": single, f"mlp_{args.members}_mean": ensemble},
        "pooled_mae": {
            "mlp_1": float(np.dot(w, single)),
            f"mlp_{args.members}_mean": float(np.dot(w, ensemble)),
        },
        "git": git_commit(),
        "machine": machine_info("sklearn", "torch"),
        "wall_s": time.perf_counter() - t0,
    }
    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n", overwrite=True)
    print(json.dumps(report["pooled_mae"]), f"wrote {args.out} in {report['wall_s']:.0f}s")
    return report


if __name__ == "__main__":
    main()
