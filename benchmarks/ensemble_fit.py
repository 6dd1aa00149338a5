"""Training an ensemble's members in turn against in worker processes, side by side.

``TwinEnsemble.fit(n_jobs=...)`` trains the members of a deep ensemble in worker
processes (:mod:`twin.model.member_training`).  This benchmark fits the same ensemble
of the full ROSMAP or TCGA-breast omics (``$TWIN_DATA/omics``; the settings of
``benchmarks/impute.py``: ``latent_dim=16``, default networks and training) once with
``n_jobs=1`` and once per requested worker count, in one run, and records the wall
time, the speed-up and whether every member's weights are identical to the serial
fit's (they must be: the seeds fix everything a fit draws).

Usage::

    python benchmarks/ensemble_fit.py                       # ROSMAP, 5 members, n_jobs 1 vs 2
    python benchmarks/ensemble_fit.py --dataset tcga --jobs 2 4

Writes ``benchmarks/results/ensemble_fit.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import data_root, git_commit, machine_info  # noqa: E402
from impute import DATASETS, load_dataset  # noqa: E402


def same_weights(a, b) -> bool:
    """Whether two ensembles' members have identical weights, member by member."""
    for ma, mb in zip(a.members, b.members, strict=True):
        sa, sb = ma.module.state_dict(), mb.module.state_dict()
        if sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa):
            return False
    return True


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), default="rosmap")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--jobs", type=int, nargs="+", default=[2], help="worker counts to compare")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "ensemble_fit.json"
    )
    args = p.parse_args(argv)

    from twin.model import TwinEnsemble

    cohort, _ = load_dataset(args.dataset, data_root())
    runs = []
    serial = None
    for n_jobs in [1, *args.jobs]:
        ens = TwinEnsemble(cohort.schema, latent_dim=args.latent_dim, n_members=args.members)
        t0 = time.perf_counter()
        ens.fit(cohort, seed=args.seed, progress=False, n_jobs=n_jobs)
        seconds = time.perf_counter() - t0
        run = {
            "n_jobs": n_jobs,
            "seconds": seconds,
            "epochs": [len(m.history.train_loss) for m in ens.members],
        }
        if serial is None:
            serial = (ens, seconds)
        else:
            run["speedup_vs_serial"] = serial[1] / seconds
            run["identical_weights"] = same_weights(serial[0], ens)
        runs.append(run)
        print(f"[ensemble_fit] n_jobs={n_jobs}: {seconds:.1f} s", flush=True)
    report = {
        "benchmark": "ensemble_fit",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "n_individuals": len(cohort),
        "runs": runs,
        "git": git_commit(),
        "machine": machine_info("torch", "pyro"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, args.out)
    print(json.dumps(runs, indent=1))
    return report


if __name__ == "__main__":
    main()
