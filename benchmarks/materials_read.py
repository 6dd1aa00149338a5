"""Read the full materials tables into cohorts: a check and timing on the real files.

The tests use a small excerpt of the concrete table and a *synthetic* NIMS-like table
(the NIMS table is GPL-3 and is not copied into the repository).  This script reads the
real files, prints each cohort, its import report and process graph, checks a few
invariants and times the reads.

Usage::

    python benchmarks/materials_read.py         # $TWIN_DATA/materials or ../shared/data/materials
    python benchmarks/materials_read.py --data DIR --out benchmarks/results/materials_read.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from twin.materials import ProcessGraph, read_concrete, read_nims


def _timed(func, *args, repeat: int = 3, **kwargs):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(
        os.environ.get("TWIN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    parser.add_argument("--data", default=str(default_data / "materials"))
    parser.add_argument("--out", default=None, help="write a JSON summary here")
    args = parser.parse_args()
    data = Path(args.data)
    summary = {}

    concrete_csv = data / "concrete" / "concrete.csv"
    for mode in ("skip", "replicates"):
        cohort, seconds = _timed(read_concrete, concrete_csv, duplicates=mode)
        report = cohort.attr_json("twin_table_report")
        print(f"--- concrete, duplicates={mode!r}: {seconds * 1e3:.0f} ms")
        print(cohort)
        print(
            {k: report[k] for k in ("n_rows", "n_rows_kept", "n_rows_skipped", "counts")}
            | {"n_copies_dropped": report["n_copies_dropped"]}
        )
        wc = cohort.values("mix")[
            :, list(cohort.data["mix_feature"].values).index("water_cement_ratio")
        ]
        assert np.nanmin(wc) > 0.2 and np.nanmax(wc) < 2.0, "implausible w/c ratio"
        assert np.nanmax(cohort.times()) == 365.0
        summary[f"concrete_{mode}"] = {
            "seconds": seconds,
            "individuals": len(cohort),
            "observations": int(cohort.mask("strength").sum()),
            "report_counts": report["counts"],
            "n_copies_dropped": report["n_copies_dropped"],
        }
    print(ProcessGraph.from_cohort(cohort))

    nims_csv = data / "nims_fatigue" / "nims_fatigue.csv"
    steel, seconds = _timed(read_nims, nims_csv)
    report = steel.attr_json("twin_table_report")
    print(f"--- NIMS steels: {seconds * 1e3:.0f} ms")
    print(steel)
    print(steel.features("properties")[["name", "unit", "display"]].to_string(index=False))
    assert report["n_rows_skipped"] == 0 and len(steel) == 360
    props = steel.values("properties")
    ratio = props[:, 1] / props[:, 3]  # tensile strength (MPa) / hardness (HV): about 3.2
    print(f"tensile/hardness ratio {ratio.min():.2f}-{ratio.max():.2f} (HV assumption check)")
    print(ProcessGraph.from_cohort(steel))
    summary["nims"] = {
        "seconds": seconds,
        "individuals": len(steel),
        "report_counts": report["counts"],
        "tensile_over_hardness": [float(ratio.min()), float(ratio.max())],
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
