"""Concrete what-ifs and inverse design with a property twin.

1. Fits a concrete twin (mix -> strength at 3 ... 365 days) on the UCI concrete table:
   ``$TWIN_DATA/materials/concrete/concrete.csv`` if present, else the demo copy shipped
   with twin (CC BY 4.0, I-Cheng Yeh, DOI 10.24432/C5PK67).
2. Runs the sweep ``scenarios/concrete_wc_sweep.yaml`` (water/cement ratio x fly ash)
   on a base mix and prints the 28-day strength and the curve over age.
3. Asks for the mix of least cement reaching a target 28-day strength with a given
   probability, and compares it with the nearest real mixes.

Usage::

    python scenarios/concrete_design.py                       # ~1-2 min on a laptop CPU
    python scenarios/concrete_design.py --target 50 --probability 0.95 --epochs 1500
    python scenarios/concrete_design.py --members 5   # an ensemble of 5 twins (5x the fit)
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from twin.materials_twins import concrete_cohort, concrete_twin, inverse_design, sweep

HERE = Path(__file__).resolve().parent


def data_path() -> Path | None:
    root = Path(os.environ.get("TWIN_DATA", HERE.parent.parent / "shared" / "data"))
    path = root / "materials" / "concrete" / "concrete.csv"
    return path if path.exists() else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=float, default=40.0, help="28-day strength, MPa")
    ap.add_argument("--probability", type=float, default=0.9)
    ap.add_argument("--epochs", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--members",
        type=int,
        default=1,
        help="ensemble members (n_members; 5 makes the design's probability depend less on "
        "the training seed, at 5x the training time)",
    )
    ap.add_argument("--base", default=None, help="mix_id of the base mix (default: a median mix)")
    args = ap.parse_args(argv)

    cohort = concrete_cohort(data_path())
    print(cohort)
    if args.base is not None and args.base not in set(cohort.individuals.astype(str)):
        examples = ", ".join(cohort.individuals.astype(str)[:3])
        ap.error(f"--base {args.base!r} is not a mix of the data (mix ids such as {examples})")
    model = concrete_twin(n_members=args.members)
    model.fit(cohort, seed=args.seed, epochs=args.epochs, progress=True)
    print(model)

    mixes = model.input_frame(cohort)
    if args.base is None:  # the mix closest to the median of every component
        z = (mixes - mixes.median()) / mixes.std()
        args.base = z[model.base_inputs].abs().sum(axis=1).idxmin()
    base = mixes.loc[args.base, model.base_inputs]
    print(f"\nbase mix {args.base}:\n{base.round(1).to_string()}")

    with warnings.catch_warnings():  # flagged in the table below instead
        warnings.simplefilter("ignore", UserWarning)
        ds = sweep(model, base, HERE / "concrete_wc_sweep.yaml", ages="scenario", seed=args.seed)
    outside = ds["outside_range"].to_pandas()
    table = pd.DataFrame(
        {
            "w/c": ds["settings"].sel(setting="water_cement_ratio").values,
            "fly ash": ds["settings"].sel(setting="fly_ash").values,
            "water": ds["inputs"].sel(input="water").values,
            "fc28 mean": ds["mean"].sel(property="fc_28d").values,
            "fc28 q05": ds["q05"].sel(property="fc_28d").values,
            "fc28 q95": ds["q95"].sel(property="fc_28d").values,
            "distance": ds["distance"].values,
            "outside the data": [
                ", ".join(outside.columns[row]) or ("-" if not far else "combination")
                for row, far in zip(outside.to_numpy(), ds["outside_data"].values, strict=True)
            ],
        },
        index=ds["scenario"].values,
    )
    print(
        "\nsweep (MPa, 90 % interval; 'outside the data': inputs beyond the training range, "
        "or a combination far from every training mix -- extrapolations):\n"
        + table.round(2).to_string()
    )
    curve = ds["curve_mean"].to_pandas().round(1)
    curve.columns = [
        f"{a:g} d" + ("*" if x else "")
        for a, x in zip(curve.columns, ds["extrapolated"].values, strict=True)
    ]
    print(
        "\nmean strength over age (MPa; * ages outside the tested ones, extrapolated):\n"
        + curve.to_string()
    )

    res = inverse_design(
        model,
        {"fc_28d": args.target},
        args.probability,
        cost="cement",
        reference=cohort,
        seed=args.seed,
    )
    print(f"\ninverse design: least cement for P(fc28 >= {args.target:g}) >= {args.probability:g}")
    print(res)
    pred = res.prediction.sel(property="fc_28d")
    print(
        f"twin forward prediction: mean {pred['mean'].item():.1f} MPa, 90 % interval "
        f"[{pred['q05'].item():.1f}, {pred['q95'].item():.1f}]"
    )
    near = res.nearest[
        ["distance", "cement", "blast_furnace_slag", "fly_ash", "water", "measured_fc_28d"]
    ]
    print("nearest real mixes:\n" + near.round(2).to_string())
    ok = near["measured_fc_28d"].dropna()
    if len(ok):
        print(
            f"measured 28-day strength of the nearest mixes: {np.round(ok.to_numpy(), 1).tolist()} "
            f"({(ok >= args.target).mean():.0%} reach {args.target:g} MPa)"
        )


if __name__ == "__main__":
    main()
