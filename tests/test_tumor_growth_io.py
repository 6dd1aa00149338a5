"""Reading lesion-size trial data (list-valued CSV cells) into a Cohort."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.io.tumor_growth import read_lesion_trials

DATA = Path(__file__).parent / "data" / "oncology" / "lesion_trials_excerpt.csv"


def test_patients_become_longitudinal_individuals() -> None:
    raw = pd.read_csv(DATA)
    cohort = read_lesion_trials(DATA)
    assert len(cohort) == len(raw)
    row = raw.iloc[0]
    i = list(cohort.individuals).index(row["Pt_hashID"])
    times = json.loads(row["T_days"])
    diam = json.loads(row["Lesion_diam"])
    feats = list(cohort.data["lesion_feature"].values)
    mask = cohort.mask("lesion")[i, :, feats.index("diameter")]
    np.testing.assert_array_equal(cohort.times()[i][mask], times)
    np.testing.assert_array_equal(
        cohort.values("lesion")[i, :, feats.index("diameter")][mask], diam
    )
    assert cohort.schema["lesion"].feature("diameter").unit == "mm"
    iv = cohort.interventions
    assert (
        iv["agent"] == raw.set_index("Pt_hashID").loc[iv["individual"], "Study_Arm"].to_numpy()
    ).all()
    assert (iv["start_t"] == 0).all()
    assert cohort.covariates.loc[row["Pt_hashID"], "arm"] == row["Study_Arm"]


def test_bad_rows_are_skipped_and_reported(tmp_path: Path) -> None:
    raw = pd.read_csv(DATA)
    bad = raw.copy()
    bad.loc[1, "Lesion_diam"] = "[1.0, oops]"
    bad.loc[2, "Lesion_vol"] = "[1.0]"
    bad = pd.concat([bad, raw.iloc[[0]]])  # duplicate patient id
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    cohort = read_lesion_trials(path)
    assert len(cohort) == len(raw) - 2
    report = cohort.attr_json("twin_table_report")
    reasons = {r["row"]: r["reason"] for r in report["skipped"]}
    assert "Lesion_diam" in reasons[3]
    assert "Lesion_vol" in reasons[4] and "time points" in reasons[4]
    assert "duplicate patient id" in reasons[len(bad) + 1]
    assert all(r["file"] == str(path) for r in report["skipped"])


def test_missing_columns_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    pd.DataFrame({"Pt_hashID": ["a"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"x\.csv: missing columns"):
        read_lesion_trials(path)
