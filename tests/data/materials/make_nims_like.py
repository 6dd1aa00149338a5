"""Write ``nims_like_synthetic.csv``: a synthetic table shaped like the NIMS steel fatigue table.

Same column headers as the published table (including its misspelt ``Temperaing
Temperature``), invented values in plausible ranges; no row of the real (GPL-3) data is
used.  Row 5 (file line 6) has empty inclusion ratings: characterisation missing.

Run from this folder: ``python make_nims_like.py``.
"""

import numpy as np
import pandas as pd

COLUMNS = [
    "Normalized Temperature",
    "Quenching Temperature",
    "Temperaing Temperature",
    "C",
    "Si",
    "Mn",
    "P",
    "S",
    "Ni",
    "Cr",
    "Cu",
    "Mo",
    "RR",
    "dA",
    "dB",
    "dC",
    "Fatigue Strength (10E7 Cycles)",
    "Tensile Strength",
    "Fracture Strength",
    "Hardness",
]


def make(n: int = 12, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = pd.DataFrame(
        {
            "Normalized Temperature": rng.choice([845, 865, 870, 900], n),
            "Quenching Temperature": rng.choice([825, 845, 855, 865], n),
            "Temperaing Temperature": rng.choice([550, 600, 650, 680], n),
            "C": rng.uniform(0.30, 0.55, n).round(2),
            "Si": rng.uniform(0.18, 0.33, n).round(2),
            "Mn": rng.uniform(0.50, 1.00, n).round(2),
            "P": rng.uniform(0.008, 0.028, n).round(3),
            "S": rng.uniform(0.004, 0.028, n).round(3),
            "Ni": rng.uniform(0.01, 1.50, n).round(2),
            "Cr": rng.uniform(0.01, 1.10, n).round(2),
            "Cu": rng.uniform(0.01, 0.20, n).round(2),
            "Mo": rng.choice([0.0, 0.16, 0.20], n),
            "RR": rng.choice([420, 825, 1270, 2900], n),
            "dA": rng.uniform(0.0, 0.12, n).round(2),
            "dB": rng.choice([0.0, 0.0, 0.01, 0.02], n),
            "dC": rng.choice([0.0, 0.01, 0.02], n),
        }
    )
    hardness = 150 + 250 * t["C"] + 40 * t["Cr"] - 0.25 * (t["Temperaing Temperature"] - 550)
    hardness = (hardness + rng.normal(0, 5, n)).round()
    tensile = (3.2 * hardness + rng.normal(0, 10, n)).round()
    t["Fatigue Strength (10E7 Cycles)"] = (0.5 * tensile + rng.normal(0, 8, n)).round()
    t["Tensile Strength"] = tensile
    t["Fracture Strength"] = (1.8 * tensile + rng.normal(0, 20, n)).round()
    t["Hardness"] = hardness
    t = t.astype(object)
    t.loc[4, ["dA", "dB", "dC"]] = None  # inclusion ratings not measured
    return t[COLUMNS]


if __name__ == "__main__":
    make().to_csv("nims_like_synthetic.csv", index=False)
