"""What-if over a steel's tempering temperature with a property twin (NIMS fatigue data).

The NIMS table (GPL-3, not shipped with twin) is read from
``$TWIN_DATA/materials/nims_fatigue/nims_fatigue.csv`` (default ``$TWIN_DATA`` =
``<repo>/../shared/data``).  Each of its 120 heats (one composition) was tempered at
three temperatures.  The script holds one heat out, fits a steel twin (composition,
processing, inclusions -> fatigue, tensile, fracture strength, hardness) on the other
heats, sweeps the held-out heat's tempering temperature over the data's range, and
prints the predictions next to the heat's measured properties at its three real
tempering temperatures.  Then it updates the twin with one measured property
(hardness, cheap to measure) and shows how the others sharpen.

Usage::

    python scenarios/steel_heat_treatment.py                 # ~1 min on a laptop CPU
    python scenarios/steel_heat_treatment.py --heat 17 --epochs 1500
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from twin.materials import read_nims
from twin.materials_twins import steel_twin, sweep

HERE = Path(__file__).resolve().parent
COMPOSITION = ["C", "Si", "Mn", "P", "S", "Ni", "Cr", "Cu", "Mo"]


def data_path() -> Path:
    root = Path(os.environ.get("TWIN_DATA", HERE.parent.parent / "shared" / "data"))
    return root / "materials" / "nims_fatigue" / "nims_fatigue.csv"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heat", type=int, default=0, help="index of the held-out heat (0-119)")
    ap.add_argument("--epochs", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    path = data_path()
    if not path.exists():
        print(f"NIMS data not found at {path}; set TWIN_DATA (the table is GPL-3, not shipped).")
        sys.exit(0)

    cohort = read_nims(path)
    comp = pd.DataFrame(cohort.values("composition"), index=cohort.individuals, columns=COMPOSITION)
    heat = comp.groupby(COMPOSITION, sort=False).ngroup()
    if not 0 <= args.heat <= heat.max():
        ap.error(f"--heat must be between 0 and {heat.max()} (the table's heats), got {args.heat}")
    held = heat == args.heat
    train, test = cohort.select(~held.to_numpy()), cohort.select(held.to_numpy())
    model = steel_twin().fit(train, seed=args.seed, epochs=args.epochs, progress=True)
    print(model)

    inputs = model.input_frame(test)
    measured = model.output_frame(test)
    base = inputs.iloc[0]
    temps = np.arange(550.0, 681.0, 10.0)
    ds = sweep(model, base, {"tempering_temperature": temps}, seed=args.seed)
    rows = {}
    for prop in model.property_names:
        sel = ds.sel(property=prop)
        rows[f"{prop} mean"] = sel["mean"].values
        rows[f"{prop} 90% PI"] = [
            f"[{lo:.0f}, {hi:.0f}]"
            for lo, hi in zip(sel["q05"].values, sel["q95"].values, strict=True)
        ]
    table = pd.DataFrame(rows, index=pd.Index(temps, name="tempering (C)"))
    print(f"\nheld-out heat {args.heat}: what-if over tempering temperature (MPa; hardness HV)")
    print(table.round(0).to_string())
    real = measured.copy()
    real.insert(0, "tempering (C)", inputs["tempering_temperature"].to_numpy())
    print("\nmeasured at its real tempering temperatures:\n" + real.round(0).to_string())

    before = model.predict(test, n_draws=1000, seed=args.seed)
    after = model.predict(test, observed=["hardness"], n_draws=1000, seed=args.seed)
    print("\nupdate with measured hardness (mean absolute error over the heat's 3 temperings):")
    for prop in model.property_names:
        if prop == "hardness":
            continue
        y = measured[prop].to_numpy()
        e0 = np.abs(before["mean"].sel(property=prop).values - y).mean()
        e1 = np.abs(after["mean"].sel(property=prop).values - y).mean()
        w0 = (before["q95"] - before["q05"]).sel(property=prop).values.mean()
        w1 = (after["q95"] - after["q05"]).sel(property=prop).values.mean()
        print(
            f"  {prop:<18} error {e0:6.1f} -> {e1:6.1f}   90% interval width {w0:6.1f} -> {w1:6.1f}"
        )


if __name__ == "__main__":
    main()
