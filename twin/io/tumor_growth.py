"""Reader for lesion-size trial data in the TumorGrowth.jl / Laleh et al. (2022) format.

One row per patient; the time points and measurements are stored as text lists::

    Pt_hashID,Study_Arm,Study_id,Arm_id,T_weeks,T_days,Lesion_diam,Lesion_vol,...
    0218...-S1,Study_1_Arm_1,1,1,"[0.1, 6.0]","[-21, 41]","[13.0, 11.0]","[1142.44, 692.12]",...

Each patient becomes an individual with a longitudinal ``lesion`` modality on a time
axis of days since treatment start (no calendar), the study arm as an intervention
starting at day 0, and study / arm / response as covariates.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from twin.cohort import Cohort

#: Columns holding per-reading lists, and the feature each becomes.
LIST_COLUMNS = {
    "Lesion_diam": ("diameter", "mm", "Sum of lesion diameters"),
    "Lesion_vol": ("volume", "mm3", "Lesion volume"),
}
REQUIRED = ("Pt_hashID", "Study_Arm", "T_days", *LIST_COLUMNS)


def _parse_list(text: object) -> list[float]:
    if not isinstance(text, str):
        raise ValueError(f"expected a list like '[1.0, 2.0]', got {text!r}")
    values = json.loads(text)
    if not isinstance(values, list):
        raise ValueError(f"expected a list, got {text!r}")
    return [float(v) for v in values]


def read_lesion_trials(path: str | os.PathLike) -> Cohort:
    """Read lesion-size trial data (one row per patient, list-valued cells) into a Cohort.

    Rows that cannot be parsed (malformed lists, lists of unequal length, negative
    sizes, duplicate patient ids) are skipped and listed in the cohort attribute
    ``twin_table_report`` with file, row number, column and reason.

    Parameters
    ----------
    path
        CSV file, e.g. ``oncology/lesion_trials/patient_data.csv``.

    Returns
    -------
    Cohort
        Longitudinal modality ``lesion`` (features ``diameter`` in mm, ``volume`` in
        mm3) on days since treatment start; covariates ``study``, ``arm``,
        ``response``; one intervention per patient: the study arm from day 0.
    """
    path = Path(path)
    table = pd.read_csv(path, dtype=str)
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    rows, skipped, seen = [], [], set()
    for i, rec in table.iterrows():
        line = int(i) + 2  # header is line 1
        pid = rec["Pt_hashID"]
        try:
            if pid in seen:
                raise ValueError(f"duplicate patient id {pid!r}")
            times = _parse_list(rec["T_days"])
            series = {}
            for col in LIST_COLUMNS:
                try:
                    series[col] = _parse_list(rec[col])
                except (ValueError, json.JSONDecodeError) as exc:
                    raise ValueError(f"column {col}: {exc}") from exc
                if len(series[col]) != len(times):
                    raise ValueError(
                        f"column {col}: {len(series[col])} values for {len(times)} time points"
                    )
                if any(v < 0 for v in series[col]):
                    raise ValueError(f"column {col}: negative size")
        except (ValueError, json.JSONDecodeError) as exc:
            skipped.append({"file": str(path), "row": line, "id": str(pid), "reason": str(exc)})
            continue
        seen.add(pid)
        for col, (feature, _, _) in LIST_COLUMNS.items():
            rows.append(
                pd.DataFrame(
                    {"individual": pid, "time": times, "feature": feature, "value": series[col]}
                )
            )
    long = pd.concat(rows, ignore_index=True)
    kept = table[table["Pt_hashID"].isin(seen)].drop_duplicates("Pt_hashID").set_index("Pt_hashID")
    covariates = pd.DataFrame(
        {
            "study": kept["Study_id"]
            if "Study_id" in kept
            else kept["Study_Arm"].str.split("_Arm").str[0],
            "arm": kept["Study_Arm"],
            "response": kept.get("response", pd.Series("", index=kept.index)),
        },
        index=kept.index,
    )
    interventions = pd.DataFrame(
        {
            "individual": kept.index,
            "agent": kept["Study_Arm"].to_numpy(),
            "kind": "study_arm",
            "start_t": 0.0,
            "end_t": np.nan,
            "dose": 1.0,
        }
    )
    info = {
        "lesion": {f: {"unit": u, "display": d} for f, u, d in LIST_COLUMNS.values()},
    }
    report = {"file": str(path), "rows": len(table), "kept": len(seen), "skipped": skipped}
    return Cohort.from_tables(
        longitudinal={"lesion": long},
        covariates=covariates,
        interventions=interventions,
        feature_info=info,
        attrs={"twin_table_report": report, "twin_source": str(path)},
    )
