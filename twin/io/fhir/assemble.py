"""The main-process step: worker rows -> one :class:`~twin.cohort.Cohort`.

In order: drop duplicate resources (first kept), resolve subjects to Patients,
parse times, normalise units (convert within a dimension, keep incompatible units
apart as separate features), reject impossible values, select features, evaluate
condition indicators at every visit, and hand the tables to
:meth:`Cohort.from_tables`.  Every dropped row is reported with its file, entry,
resource and reason.
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd

from twin.cohort import INTERVENTION_COLUMNS, Cohort
from twin.io.fhir import references as refs
from twin.io.fhir.courses import close_medication_courses
from twin.io.fhir.elements import LOINC, SNOMED, feature_name
from twin.io.fhir.features import FeatureSelection
from twin.io.fhir.report import ATTR as REPORT_ATTR
from twin.io.fhir.report import IngestReport, SkippedEntry
from twin.io.fhir.rows import COLUMNS, TaskResult
from twin.io.fhir.units import PREFERRED_UNIT, conversion, dimension_key, plausible_range

DAYS_PER_YEAR = 365.25
_KIND_TYPE = {
    "quantity": "continuous",
    "integer": "continuous",
    "coded": "categorical",
    "string": "categorical",
    "boolean": "binary",
}


class _Context:
    """Resources of all tasks with their provenance, for reporting by global index."""

    def __init__(self, results: list[TaskResult], report: IngestReport):
        self.report = report
        self.dropped: set[int] = set()
        self.files: list[str] = []
        self.rtypes: list[str] = []
        self.ids: list[str] = []
        self.entries: list[int] = []
        self.urls: list[str] = []
        #: reference keys of Patients rejected by validation -> where they are
        self.rejected_patients: dict[str, str] = {}
        rows: dict[str, list[tuple]] = {t: [] for t in COLUMNS}
        offsets: dict[str, list[int]] = {t: [] for t in COLUMNS}
        for r in results:
            for rid, url, entry in r.rejected_patients:
                for key in patient_keys(rid, url):
                    self.rejected_patients.setdefault(key, f"{r.file}, entry {entry}")
            offset = len(self.rtypes)
            for rtype, rid, entry, url in r.resources:
                self.files.append(r.file)
                self.rtypes.append(rtype)
                self.ids.append(rid)
                self.entries.append(entry)
                self.urls.append(url)
            for table, found in r.rows.items():
                rows[table].extend(found)
                offsets[table].extend([offset] * len(found))
        self.tables: dict[str, pd.DataFrame] = {}
        for table, found in rows.items():
            frame = (
                pd.DataFrame.from_records(found, columns=COLUMNS[table])
                if found
                else (pd.DataFrame({c: [] for c in COLUMNS[table]}))
            )
            frame["res"] = frame["res"].to_numpy(dtype=np.int64) + np.asarray(
                offsets[table], dtype=np.int64
            )
            self.tables[table] = frame

    @property
    def resource_types(self) -> pd.Series:
        return pd.Series(self.rtypes, dtype=object)

    def skip(self, res: int, category: str, reason: str) -> None:
        i = int(res)
        self.report.skip(
            SkippedEntry(
                self.files[i], int(self.entries[i]), self.rtypes[i], self.ids[i], category, reason
            )
        )

    def drop_resources(self, res: np.ndarray) -> None:
        """Remove every row of the given resources from all tables."""
        if len(res) == 0:
            return
        self.dropped.update(int(r) for r in res)
        for name, table in self.tables.items():
            self.tables[name] = table[~table["res"].isin(res)].reset_index(drop=True)


def _parse_times(values: pd.Series) -> pd.Series:
    """ISO strings -> tz-naive UTC datetime64[ns] (NaT where empty or unparseable)."""
    parsed = pd.to_datetime(values.replace("", None), utc=True, format="ISO8601", errors="coerce")
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


# ------------------------------------------------------------------ resources
def drop_duplicates(ctx: _Context) -> None:
    """Keep the first resource of each (type, id); report and drop the later copies."""
    res = pd.DataFrame({"rtype": ctx.rtypes, "rid": ctx.ids}, dtype=object)
    with_id = res[res["rid"] != ""]
    dup = with_id.duplicated(["rtype", "rid"], keep="first")
    if not dup.any():
        return
    firsts = with_id[~dup]
    first = {
        (rtype, rid): i
        for i, rtype, rid in zip(firsts.index, firsts["rtype"], firsts["rid"], strict=True)
    }
    for i, rtype, rid in zip(
        with_id.index[dup], with_id["rtype"][dup], with_id["rid"][dup], strict=True
    ):
        f = first[(rtype, rid)]
        ctx.skip(
            i,
            "duplicate-id",
            f"duplicate {rtype} id {rid!r} (first read from {ctx.files[f]} entry "
            f"{ctx.entries[f]}); kept the first",
        )
    ctx.drop_resources(with_id.index[dup].to_numpy())


def patient_index(ctx: _Context) -> tuple[pd.DataFrame, dict[str, str]]:
    """Patients by id, and the lookup from reference keys (``Patient/id``, urn) to ids."""
    pats = ctx.tables["patient"].copy()
    pats["url"] = [ctx.urls[i] for i in pats["res"].tolist()]
    no_id = pats["id"] == ""
    from_url = pats["url"].str.replace("urn:uuid:", "", regex=False).str.rsplit("/", n=1).str[-1]
    pats.loc[no_id, "id"] = from_url[no_id]
    for res in pats.loc[pats["id"] == "", "res"]:
        ctx.skip(res, "not-a-resource", "Patient without id or fullUrl")
    pats = pats[pats["id"] != ""].drop_duplicates("id").set_index("id", drop=False)
    alias: dict[str, str] = {}
    for pid, url in zip(pats["id"], pats["url"], strict=True):
        for key in patient_keys(pid, url):
            alias[key] = pid
    return pats, alias


def patient_keys(pid: str, url: str) -> list[str]:
    """The reference keys that name a Patient: ``Patient/id``, ``urn:uuid:id``, its fullUrl."""
    keys = [f"Patient/{pid}", f"urn:uuid:{pid}"] if pid else []
    return keys + ([url] if url else [])


def resolve_subjects(ctx: _Context, alias: dict[str, str]) -> None:
    """Map ``subject`` keys to patient ids; report and drop resources with unknown subjects."""
    unknown: dict[int, str] = {}
    for name in ("observation", "condition", "intervention", "reference"):
        table = ctx.tables[name]
        ind = table["subject"].map(alias)
        table["individual"] = ind
        bad = table[ind.isna()]
        for res, subject in zip(bad["res"], bad["subject"], strict=True):
            unknown.setdefault(int(res), subject)
    for res, subject in unknown.items():
        if not subject:
            reason = "no subject/patient reference"
        elif subject in ctx.rejected_patients:
            reason = (
                f"subject {subject!r} is a Patient rejected by validation "
                f"({ctx.rejected_patients[subject]}: see its invalid-resource record)"
            )
        else:
            reason = f"subject {subject!r} is not a Patient in the input"
        ctx.skip(res, "unknown-subject", reason)
    ctx.drop_resources(np.fromiter(unknown, dtype=int, count=len(unknown)))


# ------------------------------------------------------------------ observations
def _main_display(table: pd.DataFrame, keys: list[str]) -> pd.Series:
    disp = table[table["display"] != ""]
    return disp.groupby(keys)["display"].agg(lambda s: s.value_counts().index[0])


def unit_plan(ctx: _Context, combos: pd.DataFrame) -> pd.DataFrame:
    """Per (system, code, source unit): feature name, feature unit, scale, shift, low, high.

    A code whose values come in units of different dimensions (e.g. eGFR in
    ``mL/min/{1.73_m2}`` and ``mL/min``) gets one feature per dimension: the main one
    (preferred unit, else most values) is named by the code, the others
    ``code[unit]``; each split and each conversion is reported.
    """
    report = ctx.report
    combos = combos.assign(
        dim=[
            dimension_key(c, u)
            for c, u in zip(combos["code"].tolist(), combos["unit"].tolist(), strict=True)
        ]
    )
    plan = []
    for (system, code), grp in combos.groupby(["system", "code"], sort=False):
        base = feature_name(system, code, LOINC)
        dims = grp.groupby("dim")["n"].sum().sort_values(ascending=False, kind="stable")
        preferred = PREFERRED_UNIT.get(code) if system == LOINC else None
        pref_dim = dimension_key(code, preferred) if preferred else None
        main_dim = pref_dim if pref_dim in dims.index else dims.index[0]
        units = {}
        for dim in dims.index:
            in_dim = grp[grp["dim"] == dim].sort_values(["n", "unit"], ascending=[False, True])
            units[dim] = preferred if dim == pref_dim else in_dim["unit"].iloc[0]
        for dim, n in dims.items():
            unit = units[dim]
            name = base if dim == main_dim else f"{base}[{unit}]"
            low, high = plausible_range(code if system == LOINC else "", unit)
            in_dim = grp[grp["dim"] == dim]
            for src, count in zip(in_dim["unit"].tolist(), in_dim["n"].tolist(), strict=True):
                scale, shift = conversion(code, src, unit)
                plan.append((system, code, src, name, unit, scale, shift, low, high))
                if src != unit:
                    report.unit_conversions.append(
                        {"code": code, "from": src, "to": unit, "count": int(count)}
                    )
            if dim != main_dim:
                report.unit_splits.append(
                    {
                        "code": code,
                        "feature": name,
                        "unit": unit,
                        "main_unit": units[main_dim],
                        "count": int(n),
                    }
                )
    return pd.DataFrame(
        plan,
        columns=[
            "system",
            "code",
            "unit",
            "feature",
            "feature_unit",
            "scale",
            "shift",
            "low",
            "high",
        ],
    )


def normalise_quantities(ctx: _Context, obs: pd.DataFrame) -> pd.DataFrame:
    """Quantities converted to their feature's unit; impossible values reported and dropped."""
    q = obs[obs["kind"] == "quantity"]
    if q.empty:
        return q.assign(feature=pd.Series(dtype=object), feature_unit=pd.Series(dtype=object))
    combos = q.groupby(["system", "code", "unit"]).size().rename("n").reset_index()
    q = q.merge(unit_plan(ctx, combos), on=["system", "code", "unit"], how="left")
    original = q["value"].to_numpy(dtype=float)
    values = original * q["scale"].to_numpy() + q["shift"].to_numpy()
    q["value"] = values
    bad = (values < q["low"].to_numpy()) | (values > q["high"].to_numpy())
    for i in np.nonzero(bad)[0].tolist():
        row = q.iloc[i]
        ctx.skip(
            row["res"],
            "impossible-value",
            f"{row['display'] or row['code']} ({row['code']}) = {original[i]:g} "
            f"{row['unit']}: outside the plausible range [{row['low']:g}, "
            f"{row['high']:g}] {row['feature_unit']}",
        )
    return q[~bad].drop(columns=["scale", "shift", "low", "high"])


def observation_features(
    ctx: _Context, n_individuals: int, selection: FeatureSelection
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Long observation table, feature info (unit, system, code, display, type), kept names."""
    obs = ctx.tables["observation"]
    obs = obs.assign(time=_parse_times(obs["time"]))
    for res, raw in zip(
        obs.loc[obs["time"].isna(), "res"],
        ctx.tables["observation"].loc[obs["time"].isna(), "time"],
        strict=True,
    ):
        ctx.skip(res, "no-time", f"unparseable time {raw!r}")
    obs = obs[obs["time"].notna()]
    quantities = normalise_quantities(ctx, obs)
    others = obs[obs["kind"] != "quantity"].copy()
    others["feature"] = [
        feature_name(s, c, LOINC) for s, c in zip(others["system"], others["code"], strict=True)
    ]
    others["feature_unit"] = ""
    # one feature per (name, type): a code seen both as number and as category is split
    others["ftype"] = others["kind"].map(_KIND_TYPE)
    quantities["ftype"] = "continuous"
    taken = set(quantities["feature"])
    if len(others):
        per = others.groupby(["feature", "ftype"]).size().reset_index(name="n")
        per = per.sort_values("n", ascending=False, kind="stable")
        rename = {}
        for name, ftype in zip(per["feature"], per["ftype"], strict=True):
            new = name if name not in taken else f"{name}[{ftype}]"
            taken.add(new)
            rename[(name, ftype)] = new
        others["feature"] = [
            rename[k] for k in zip(others["feature"], others["ftype"], strict=True)
        ]
    long = pd.concat([quantities, others], ignore_index=True)
    if long.empty:
        empty_info = pd.DataFrame(columns=["unit", "system", "code", "display", "type"])
        return long.assign(individual=[], value=[]), empty_info, []
    shares = long.groupby("feature")["individual"].nunique() / max(n_individuals, 1)
    meta = long.groupby("feature").agg(
        system=("system", "first"),
        code=("code", "first"),
        unit=("feature_unit", "first"),
        type=("ftype", "first"),
    )
    display = _main_display(long, ["feature"])
    meta["display"] = display.reindex(meta.index).fillna("")
    cat = long[long["ftype"] == "categorical"]
    n_levels = cat.groupby("feature")["value"].nunique().to_dict()
    kept, dropped = selection.decide(shares.to_dict(), meta["code"].to_dict(), n_levels)
    ctx.report.dropped_features["observations"] = dropped
    order = sorted(kept, key=lambda f: (meta.loc[f, "type"] != "continuous", f))
    ctx.report.features["observations"] = order
    long = long[long["feature"].isin(kept)]
    info = meta.loc[order, ["unit", "system", "code", "display", "type"]]
    return long, info, order


# ------------------------------------------------------------------ conditions
def condition_episodes(
    ctx: _Context, patients: pd.DataFrame, n_individuals: int, selection: FeatureSelection
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Episodes (individual, feature, onset, end, end_unknown) of the selected conditions."""
    cond = ctx.tables["condition"].copy()
    birth = _parse_times(patients["birth_date"]).reindex(cond["individual"]).to_numpy()
    onset = _parse_times(cond["onset"]).to_numpy()
    end = _parse_times(cond["abatement"]).to_numpy()
    onset_age = birth + pd.to_timedelta(cond["onset_age_days"].astype(float), unit="D").to_numpy()
    end_age = birth + pd.to_timedelta(cond["abatement_age_days"].astype(float), unit="D").to_numpy()
    onset = np.where(np.isnat(onset), onset_age, onset)
    end = np.where(np.isnat(end), end_age, end)
    cond["onset_t"] = onset
    cond["end_t"] = end
    missing = np.isnat(onset)
    for res, raw in zip(cond.loc[missing, "res"], cond.loc[missing, "onset"], strict=True):
        ctx.skip(res, "no-time", f"unusable condition onset {raw!r}")
    cond = cond[~missing]
    cond["feature"] = [
        feature_name(s, c, SNOMED) for s, c in zip(cond["system"], cond["code"], strict=True)
    ]
    if cond.empty:
        ctx.report.features["conditions"] = []
        return cond, pd.DataFrame(columns=["unit", "system", "code", "display", "type"])
    shares = cond.groupby("feature")["individual"].nunique() / max(n_individuals, 1)
    meta = cond.groupby("feature").agg(system=("system", "first"), code=("code", "first"))
    meta["display"] = _main_display(cond, ["feature"]).reindex(meta.index).fillna("")
    kept, dropped = selection.decide(shares.to_dict(), meta["code"].to_dict())
    kept = sorted(kept)
    ctx.report.dropped_features["conditions"] = dropped
    ctx.report.features["conditions"] = kept
    meta["unit"] = ""
    meta["type"] = "binary"
    return cond[cond["feature"].isin(kept)], meta.loc[
        kept, ["unit", "system", "code", "display", "type"]
    ]


def condition_indicators(
    episodes: pd.DataFrame, visits: pd.DataFrame, features: list[str]
) -> pd.DataFrame:
    """Indicator of each selected condition at each visit: 1 within an episode, else 0.

    An episode covers ``onset <= t < end``; without an end it is ongoing, except when
    the condition is known to have ended at an unknown date: then the indicator is
    unobserved after onset.  Overlapping episodes combine as "any".
    """
    if visits.empty or not features:
        return pd.DataFrame({"individual": [], "time": [], "feature": [], "value": []})
    pairs = visits.merge(
        episodes[["individual", "feature", "onset_t", "end_t", "end_unknown"]], on="individual"
    )
    t = pairs["time"].to_numpy()
    onset = pairs["onset_t"].to_numpy()
    end = pairs["end_t"].to_numpy()
    after_end = ~np.isnat(end) & (t >= end)
    unknown = pairs["end_unknown"].to_numpy(dtype=bool) & np.isnat(end) & (t > onset)
    value = np.where(t < onset, 0.0, np.where(after_end, 0.0, np.where(unknown, 0.5, 1.0)))
    pairs["value"] = value
    hit = pairs.groupby(["individual", "time", "feature"])["value"].max()
    grid = visits.merge(pd.DataFrame({"feature": features}), how="cross")
    grid = grid.join(hit, on=["individual", "time", "feature"])
    grid["value"] = grid["value"].fillna(0.0).replace(0.5, np.nan)
    return grid[grid["value"].notna()]


# ------------------------------------------------------------------ interventions
def intervention_table(ctx: _Context, medication_days: float = 30.0) -> pd.DataFrame:
    """Canonical intervention table; ``medicationReference`` resolved via Medication
    resources, open medication orders closed into courses (:mod:`twin.io.fhir.courses`)."""
    iv = ctx.tables["intervention"].copy()
    meds = ctx.tables["medication"].drop_duplicates("key").set_index("key")
    pending = iv["medication_ref"] != ""
    if pending.any():
        found = iv.loc[pending, "medication_ref"].isin(meds.index)
        for res, ref in zip(
            iv.loc[pending][~found]["res"], iv.loc[pending][~found]["medication_ref"], strict=True
        ):
            ctx.skip(res, "no-code", f"medicationReference {ref!r} not found in the input")
        idx = iv.index[pending][found.to_numpy()]
        hit = meds.loc[iv.loc[idx, "medication_ref"]]
        iv.loc[idx, "agent"] = hit["code"].to_numpy()
        iv.loc[idx, "system"] = hit["system"].to_numpy()
        shown = hit["display"].to_numpy()
        iv.loc[idx, "display"] = np.where(shown != "", shown, iv.loc[idx, "display"])
        iv = iv[~pending | iv.index.isin(idx)]
    iv = iv[iv["agent"] != ""]
    iv["start"] = _parse_times(iv["start"])
    iv["end"] = _parse_times(iv["end"])
    iv, closed = close_medication_courses(iv, medication_days)
    for category, n in closed.items():
        if n:
            ctx.report.notes[category] = ctx.report.notes.get(category, 0) + n
    for kind, n in iv["kind"].value_counts().items():
        ctx.report.interventions[str(kind)] = int(n)
    return iv[[c for c in INTERVENTION_COLUMNS if c in iv.columns]].reset_index(drop=True)


def reference_records(ctx: _Context) -> list[dict]:
    """The references table as JSON-ready records (details decoded)."""
    table = ctx.tables["reference"]
    for rtype, n in table["resource_type"].value_counts().items():
        ctx.report.references[str(rtype)] = int(n)
    cols = ["individual", "resource_type", "id", "system", "code", "display", "date"]
    records = table[cols].to_dict("records")
    for rec, details in zip(records, table["details"], strict=True):
        rec["details"] = orjson.loads(details)
    return records


# ------------------------------------------------------------------ the cohort
def _long_table(table: pd.DataFrame) -> pd.DataFrame:
    """``individual, time, feature, value`` with a datetime ``time`` even when empty."""
    out = pd.DataFrame(
        {c: table[c] if c in table else [] for c in ("individual", "time", "feature", "value")}
    )
    out["time"] = pd.to_datetime(out["time"]).astype("datetime64[ns]")
    return out


def covariates(patients: pd.DataFrame, reference: pd.Series) -> pd.DataFrame:
    """birth_date, sex, deceased, deceased_flag, age (years at the reference time), race, ethnicity."""
    birth = _parse_times(patients["birth_date"])
    cov = pd.DataFrame(index=pd.Index(patients["id"], name="individual"))
    cov["birth_date"] = birth.to_numpy()
    cov["sex"] = patients["sex"].to_numpy()
    cov["deceased"] = _parse_times(patients["deceased"]).to_numpy()
    cov["deceased_flag"] = patients["deceased_flag"].to_numpy(dtype=float)
    ref = reference.reindex(cov.index).to_numpy(dtype="datetime64[ns]")
    cov["age"] = (ref - cov["birth_date"].to_numpy()) / np.timedelta64(1, "D") / DAYS_PER_YEAR
    for col in ("race", "ethnicity"):
        if (patients[col] != "").any():
            cov[col] = patients[col].to_numpy()
    return cov


def build_cohort(
    results: list[TaskResult],
    report: IngestReport,
    features: FeatureSelection,
    conditions: FeatureSelection,
    medication_days: float = 30.0,
) -> Cohort:
    """Assemble the cohort from all worker results (see the module docstring)."""
    ctx = _Context(results, report)
    drop_duplicates(ctx)
    patients, alias = patient_index(ctx)
    resolve_subjects(ctx, alias)
    individuals = sorted(patients.index)
    n = len(individuals)
    report.individuals = n

    obs_long, obs_info, obs_names = observation_features(ctx, n, features)
    episodes, cond_info = condition_episodes(ctx, patients, n, conditions)
    cond_names = list(cond_info.index)

    obs_times = obs_long[["individual", "time"]]
    edge_times = pd.concat(
        [
            episodes[["individual", "onset_t"]].rename(columns={"onset_t": "time"}),
            episodes[["individual", "end_t"]].rename(columns={"end_t": "time"}),
        ]
    )
    visits = pd.concat([obs_times, edge_times.dropna()], ignore_index=True)
    visits = visits.drop_duplicates().sort_values(["individual", "time"], kind="stable")
    cond_long = condition_indicators(episodes, visits, cond_names)
    reference_time = visits.groupby("individual")["time"].min()
    report.visits = int(len(visits))

    iv = intervention_table(ctx, medication_days)
    records = reference_records(ctx)
    kept = np.ones(len(ctx.rtypes), dtype=bool)
    kept[list(ctx.dropped)] = False
    used = ctx.resource_types[kept].value_counts()
    report.used = {str(k): int(v) for k, v in used.items()}

    # Cohort.from_tables cannot build a longitudinal modality without rows (yet): leave it out
    longitudinal = {
        name: _long_table(table)
        for name, table in (("observations", obs_long), ("conditions", cond_long))
        if len(table)
    }
    return Cohort.from_tables(
        longitudinal=longitudinal,
        covariates=covariates(patients, reference_time),
        interventions=iv,
        feature_info={
            k: v
            for k, v in (("observations", obs_info), ("conditions", cond_info))
            if k in longitudinal
        },
        feature_types={
            k: v
            for k, v in (
                ("observations", obs_info["type"].to_dict() if len(obs_info) else {}),
                ("conditions", {f: "binary" for f in cond_names}),
            )
            if k in longitudinal
        },
        reference_time=reference_time,
        individuals=individuals,
        attrs={refs.ATTR: records, REPORT_ATTR: report.to_dict()},
    )
