"""Turn plain tables (pandas) into the arrays of a :class:`~twin.cohort.Cohort`.

Every reader (FHIR, omics, materials, tabular) ends here, so the layout of the
cohort's ``xarray.Dataset`` is defined in one place:

* ``individual`` coordinate: string ids.
* static modality ``m``: ``m`` (individual, ``m_feature``) float64 values, NaN where
  unobserved, and ``m_mask`` (individual, ``m_feature``) bool.  Categorical features
  hold integer codes into their ``levels``.
* longitudinal modality ``m``: ``m`` (individual, visit, ``m_feature``) and ``m_mask``.
  All longitudinal modalities share the visit axis: ``visit_time`` (absolute, NaT
  where the time axis has no calendar, e.g. a material's age), ``visit_t`` (days
  since ``reference_time``) and ``visit_mask``.  Several observations at one time
  are allowed: a repeated (time, feature) pair opens another visit at the same time.
* per-feature metadata as coordinates on ``m_feature``: ``m_unit``, ``m_system``,
  ``m_code``, ``m_display``, ``m_type``, ``m_levels`` (JSON list).
* covariates: ``covariate_<name>`` (individual).
* interventions: ``intervention_<field>`` on an ``intervention`` dimension
  (see :data:`INTERVENTION_COLUMNS`).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from twin.cohort.schema import FEATURE_TYPES, FeatureSchema

FORMAT_VERSION = 1
DAY = np.timedelta64(1, "D")

#: Columns of the canonical intervention table, with their dtype kind.
INTERVENTION_COLUMNS: dict[str, str] = {
    "individual": "str",
    "agent": "str",  # code of the drug / procedure / processing step
    "system": "str",  # code system (RxNorm, SNOMED CT, ...)
    "display": "str",
    "kind": "str",  # medication, procedure, processing, ...
    "start": "datetime",
    "end": "datetime",  # NaT: ongoing or unknown
    "start_t": "float",  # days since the individual's reference time
    "end_t": "float",
    "dose": "float",
    "unit": "str",
    "route": "str",
    "interval": "float",  # days between doses; NaN: continuous / single
}

FEATURE_META = ("unit", "system", "code", "display", "type", "levels")
_RESERVED_PREFIXES = ("covariate_", "intervention_", "visit_")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")


def check_modality_name(name: str) -> None:
    """Refuse modality names that would collide with the dataset's own variables."""
    if not _NAME_RE.match(name):
        raise ValueError(
            f"modality name {name!r} must start with a letter and hold only letters, digits, "
            "'_', '.', '-'"
        )
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(("_mask", "_feature")):
        raise ValueError(f"modality name {name!r} collides with reserved cohort variable names")
    if name in ("individual", "visit", "intervention", "reference_time"):
        raise ValueError(f"modality name {name!r} is reserved")


def infer_feature_type(values: pd.Series) -> str:
    """Guess a feature's type from its pandas dtype."""
    if pd.api.types.is_bool_dtype(values):
        return "binary"
    if pd.api.types.is_numeric_dtype(values):
        return "continuous"
    return "categorical"


def encode_column(values: pd.Series, ftype: str, levels: Sequence[str] = ()) -> tuple:
    """Return (float64 values with NaN for missing, levels) for one feature column."""
    if ftype == "categorical":
        if isinstance(values.dtype, pd.CategoricalDtype) and not levels:
            levels = [str(c) for c in values.cat.categories]
        as_str = values.astype("object").where(values.notna(), None)
        if not levels:
            levels = sorted({str(v) for v in as_str if v is not None})
        lookup = {lv: i for i, lv in enumerate(levels)}
        codes = np.array(
            [np.nan if v is None else lookup.get(str(v), np.nan) for v in as_str],
            dtype=np.float64,
        )
        unknown = {str(v) for v in as_str if v is not None and str(v) not in lookup}
        if unknown:
            raise ValueError(f"values {sorted(unknown)[:5]} not among levels {list(levels)}")
        return codes, tuple(str(lv) for lv in levels)
    if values.dtype == object:  # e.g. booleans mixed with NaN after reindexing
        values = values.map(lambda v: float(v) if isinstance(v, bool | np.bool_) else v)
    out = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(out) & values.notna().to_numpy()
    if bad.any():
        examples = [repr(v) for v in values[bad].unique()[:3]]
        raise ValueError(f"non-numeric values {', '.join(examples)} in a {ftype} feature")
    return out, ()


def _feature_meta(
    name: str, column: pd.Series | None, info: Mapping[str, object] | None, ftype: str | None
) -> FeatureSchema:
    info = dict(info or {})
    t = ftype or info.get("type") or (infer_feature_type(column) if column is not None else None)
    t = t or "continuous"
    levels = info.get("levels") or ()
    if isinstance(levels, str):
        levels = tuple(json.loads(levels)) if levels.startswith("[") else tuple(levels.split("|"))
    if t == "categorical" and not levels and column is not None:
        _, levels = encode_column(column, "categorical")
        if len(levels) < 2:  # a single observed level cannot be a categorical distribution
            levels = (*levels, "other") if levels else ("absent", "present")
    return FeatureSchema(
        name=str(name),
        type=str(t),
        unit=str(info.get("unit", "") or ""),
        system=str(info.get("system", "") or ""),
        code=str(info.get("code", "") or ""),
        display=str(info.get("display", "") or ""),
        levels=tuple(str(x) for x in levels),
    )


def feature_coords(modality: str, features: Sequence[FeatureSchema]) -> dict[str, tuple]:
    """Coordinates on ``<modality>_feature`` describing each feature."""
    dim = f"{modality}_feature"
    coords: dict[str, tuple] = {dim: (dim, np.array([f.name for f in features], dtype=object))}
    for key in FEATURE_META:
        vals = [
            json.dumps(list(f.levels)) if key == "levels" else getattr(f, key) for f in features
        ]
        coords[f"{modality}_{key}"] = (dim, np.array(vals, dtype=object))
    return coords


def features_from_coords(ds: xr.Dataset, modality: str) -> tuple[FeatureSchema, ...]:
    """Inverse of :func:`feature_coords`."""
    names = ds[f"{modality}_feature"].values
    meta = {k: ds[f"{modality}_{k}"].values for k in FEATURE_META}
    return tuple(
        FeatureSchema(
            name=str(n),
            type=str(meta["type"][i]),
            unit=str(meta["unit"][i]),
            system=str(meta["system"][i]),
            code=str(meta["code"][i]),
            display=str(meta["display"][i]),
            levels=tuple(json.loads(str(meta["levels"][i]) or "[]")),
        )
        for i, n in enumerate(names)
    )


def static_block(
    modality: str,
    table: pd.DataFrame,
    individuals: pd.Index,
    info: pd.DataFrame | Mapping | None = None,
    types: Mapping[str, str] | None = None,
) -> tuple[dict, dict, list[FeatureSchema]]:
    """Arrays for one static modality from a wide table indexed by individual id."""
    check_modality_name(modality)
    if table.index.has_duplicates:
        dup = table.index[table.index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"modality {modality!r}: duplicate individual ids {dup}")
    if table.shape[1] == 0:
        first = str(table.index[0])[:60] if len(table.index) else ""
        raise ValueError(
            f"modality {modality!r}: the table has no feature columns (first id {first!r}); "
            "a file read with the wrong separator (pd.read_csv(..., sep=';')) looks like this"
        )
    info_map = _info_mapping(info)
    types = dict(types or {})
    table = _numeric_despite_stray_text(modality, table, info_map, types)
    # infer types on the table as given: reindexing adds NaN rows that change dtypes
    metas = {
        col: _feature_meta(col, table[col], info_map.get(str(col)), types.get(str(col)))
        for col in table.columns
    }
    for col, feat in metas.items():
        if not _declared_type(col, info_map, types):
            _check_identifier_like(modality, feat, table[col])
    table = table.reindex(individuals.astype(object))
    features, columns = [], []
    for col in table.columns:
        feat = metas[col]
        try:
            vals, levels = encode_column(table[col], feat.type, feat.levels)
        except ValueError as exc:
            raise ValueError(f"modality {modality!r} feature {col!r}: {exc}") from exc
        if feat.type == "categorical" and levels != feat.levels:
            feat = FeatureSchema(**{**feat.to_dict(), "levels": levels})
        _check_type(modality, feat, vals)
        features.append(feat)
        columns.append(vals)
    n = len(individuals)
    values = np.column_stack(columns) if columns else np.zeros((n, 0))
    mask = ~np.isnan(values)
    dim = f"{modality}_feature"
    data_vars = {
        modality: (("individual", dim), values),
        f"{modality}_mask": (("individual", dim), mask),
    }
    return data_vars, feature_coords(modality, features), features


def _declared_type(col: object, info: Mapping[str, dict], types: Mapping[str, str]) -> str:
    """The type the caller gave a column (``feature_types`` or ``feature_info``), or ``""``."""
    return str(types.get(str(col)) or (info.get(str(col)) or {}).get("type") or "")


#: Share of a text column's cells that must read as numbers for the column to be taken
#: as numeric with a few stray cells (``"n.a."``, ``"1,5"``) rather than as categorical.
NUMERIC_SHARE = 0.9


def _numeric_despite_stray_text(
    modality: str, table: pd.DataFrame, info: Mapping[str, dict], types: Mapping[str, str]
) -> pd.DataFrame:
    """Text columns that are numbers but for a few cells become numeric, the stray cells
    missing, with one warning naming them; columns of a declared type are left alone."""
    stray: list[str] = []
    converted = {}
    for col in table.columns:
        values = table[col]
        textual = pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)
        if _declared_type(col, info, types) or not textual:
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        present = values.notna()
        bad = present & numbers.isna()
        if not bad.any():  # numbers stored as objects are numbers; digit strings are labels
            real = values[present].map(lambda v: isinstance(v, int | float | np.number))
            if len(real) and real.all() and not values[present].map(type).eq(bool).any():
                converted[col] = numbers.astype(np.float64)
            continue
        if numbers.notna().sum() < NUMERIC_SHARE * present.sum():
            continue
        converted[col] = numbers.astype(np.float64)
        cells = ", ".join(f"{i}: {v!r}" for i, v in values[bad].head(3).items())
        stray.append(f"{col!r} ({int(bad.sum())} cell(s), e.g. {cells})")
    if not stray:
        return table
    warnings.warn(
        f"modality {modality!r}: non-numeric cells of numeric columns read as missing: "
        + "; ".join(stray[:5])
        + (f"; ... ({len(stray)} columns)" if len(stray) > 5 else "")
        + f"; declare a column categorical with feature_types={{{modality!r}: {{name: 'categorical'}}}}",
        UserWarning,
        stacklevel=4,
    )
    return table.assign(**{str(k): v for k, v in converted.items()})


def _check_identifier_like(modality: str, feat: FeatureSchema, column: pd.Series) -> None:
    """Warn about an inferred categorical whose every value is distinct (an id column)."""
    n = int(column.notna().sum())
    if feat.type == "categorical" and n > 20 and len(feat.levels) >= 0.9 * n:
        warnings.warn(
            f"modality {modality!r}: feature {feat.name!r} has {len(feat.levels)} distinct "
            f"values in {n} rows, like an identifier; was the table read without its id "
            "column as the index (pd.read_csv(..., index_col=0))?",
            UserWarning,
            stacklevel=4,
        )


def _check_type(modality: str, feat: FeatureSchema, vals: np.ndarray) -> None:
    v = vals[~np.isnan(vals)]
    if feat.type == "binary" and not np.isin(v, (0.0, 1.0)).all():
        raise ValueError(f"modality {modality!r} feature {feat.name!r}: binary values must be 0/1")
    if feat.type == "count" and ((v < 0).any() or (v != np.round(v)).any()):
        raise ValueError(
            f"modality {modality!r} feature {feat.name!r}: counts must be non-negative integers"
        )


def _info_mapping(info: pd.DataFrame | Mapping | None) -> dict[str, dict]:
    if info is None:
        return {}
    if isinstance(info, pd.DataFrame):
        return {str(k): {c: v for c, v in row.items() if pd.notna(v)} for k, row in info.iterrows()}
    return {str(k): dict(v) for k, v in info.items()}


def _as_days(times: pd.Series) -> tuple[pd.Series, bool]:
    """Return times as datetime64 (calendar) or float days, and whether calendar."""
    if pd.api.types.is_datetime64_any_dtype(times):
        t = pd.to_datetime(times, utc=True).dt.tz_localize(None)
        return t.astype("datetime64[ns]"), True
    if pd.api.types.is_numeric_dtype(times):
        return times.astype(np.float64), False
    parsed = pd.to_datetime(times, utc=True, errors="raise", format="ISO8601")
    return parsed.dt.tz_localize(None).astype("datetime64[ns]"), True


def longitudinal_blocks(
    tables: Mapping[str, pd.DataFrame],
    individuals: pd.Index,
    info: Mapping[str, pd.DataFrame | Mapping] | None = None,
    types: Mapping[str, Mapping[str, str]] | None = None,
    reference_time: pd.Series | None = None,
) -> tuple[dict, dict, list[tuple[str, list[FeatureSchema]]], pd.Series, bool]:
    """Dense (individual, visit, feature) arrays from long tables.

    Each table has columns ``individual``, ``time`` (datetime or numeric days),
    ``feature``, ``value``.  Returns data variables, coordinates, per-modality
    feature schemas, the reference time per individual and whether times are calendar
    dates.
    """
    info = info or {}
    types = types or {}
    frames = []
    calendar_flags = set()
    for modality, table in tables.items():
        check_modality_name(modality)
        missing = {"individual", "time", "feature", "value"} - set(table.columns)
        if missing:
            raise ValueError(f"longitudinal table {modality!r} lacks columns {sorted(missing)}")
        t, calendar = _as_days(table["time"])
        calendar_flags.add(calendar)
        frames.append(
            pd.DataFrame(
                {
                    "individual": table["individual"].astype(str).to_numpy(),
                    "time": t.to_numpy(),
                    "modality": modality,
                    "feature": table["feature"].astype(str).to_numpy(),
                    "value": table["value"].to_numpy(dtype=object),
                }
            )
        )
    if len(calendar_flags) > 1:
        raise ValueError("longitudinal tables mix calendar dates and numeric times")
    calendar = calendar_flags.pop() if calendar_flags else True
    if frames:
        long = pd.concat(frames, ignore_index=True)
    else:
        long = pd.DataFrame(
            {
                "individual": pd.Series([], dtype=object),
                "time": pd.Series([], dtype="datetime64[ns]"),
                "modality": pd.Series([], dtype=object),
                "feature": pd.Series([], dtype=object),
                "value": pd.Series([], dtype=object),
            }
        )
    long = long[long["individual"].isin(individuals)]
    long = long[pd.notna(long["time"])]

    ind_pos = pd.Series(np.arange(len(individuals)), index=individuals.astype(str))
    # reference time per individual: given, else the first observation
    if calendar:
        first = long.groupby("individual")["time"].min()
        ref = pd.Series(pd.NaT, index=individuals.astype(str), dtype="datetime64[ns]")
        ref.loc[first.index] = first.to_numpy()
        if reference_time is not None:
            given = pd.to_datetime(reference_time, utc=True).dt.tz_localize(None)
            given.index = given.index.astype(str)
            given = given.reindex(ref.index)
            ref = given.where(given.notna(), ref).astype("datetime64[ns]")
        t_days = (long["time"] - ref.reindex(long["individual"]).to_numpy()) / DAY
    else:
        ref = pd.Series(pd.NaT, index=individuals.astype(str), dtype="datetime64[ns]")
        t_days = long["time"].astype(np.float64)
    long = long.assign(t=np.asarray(t_days, dtype=np.float64))

    # a repeated (individual, time, modality, feature) opens a new visit at the same time
    long = long.sort_values(["individual", "t"], kind="stable")
    long["rep"] = long.groupby(["individual", "t", "modality", "feature"]).cumcount()
    visits = (
        long[["individual", "t", "rep"]]
        .drop_duplicates()
        .sort_values(["individual", "t", "rep"], kind="stable")
    )
    visits["visit"] = visits.groupby("individual").cumcount()
    n_visits = int(visits["visit"].max() + 1) if len(visits) else 0
    long = long.merge(visits, on=["individual", "t", "rep"], how="left")

    n = len(individuals)
    visit_t = np.full((n, n_visits), np.nan)
    vi = ind_pos.reindex(visits["individual"]).to_numpy()
    visit_t[vi, visits["visit"].to_numpy()] = visits["t"].to_numpy()
    visit_mask = ~np.isnan(visit_t)
    if calendar:
        visit_time = ref.to_numpy()[:, None] + (np.nan_to_num(visit_t) * 86400e9).astype(
            "timedelta64[ns]"
        )
        visit_time = np.where(visit_mask, visit_time, np.datetime64("NaT"))
    else:
        visit_time = np.full((n, n_visits), np.datetime64("NaT"), dtype="datetime64[ns]")

    data_vars: dict = {
        "visit_t": (("individual", "visit"), visit_t),
        "visit_time": (("individual", "visit"), visit_time.astype("datetime64[ns]")),
        "visit_mask": (("individual", "visit"), visit_mask),
    }
    coords: dict = {}
    schemas = []
    for modality in tables:
        sub = long[long["modality"] == modality]
        feat_names = list(pd.unique(sub["feature"]))
        info_map = _info_mapping(info.get(modality))
        mtypes = dict(types.get(modality, {}))
        for k in info_map:  # declared features keep their order even if unobserved
            if k not in feat_names:
                feat_names.append(k)
        values = np.full((n, n_visits, len(feat_names)), np.nan)
        fpos = {f: i for i, f in enumerate(feat_names)}
        rows_i = ind_pos.reindex(sub["individual"]).to_numpy(dtype=np.int64)
        rows_v = sub["visit"].to_numpy(dtype=np.int64)
        rows_f = sub["feature"].map(fpos).to_numpy(dtype=np.int64)
        raw_values = sub["value"].to_numpy()
        positions = pd.Series(np.arange(len(sub))).groupby(rows_f).indices  # feature -> rows
        codes = np.full(len(sub), np.nan)
        encoded_feats = []
        for k, f in enumerate(feat_names):
            sel = positions.get(k, np.zeros(0, dtype=np.int64))
            col = pd.Series(raw_values[sel]).infer_objects()
            feat = _feature_meta(f, col if len(sel) else None, info_map.get(f), mtypes.get(f))
            try:
                vals, levels = encode_column(col, feat.type, feat.levels)
            except ValueError as exc:
                raise ValueError(f"modality {modality!r} feature {f!r}: {exc}") from exc
            if feat.type == "categorical" and levels != feat.levels:
                feat = FeatureSchema(**{**feat.to_dict(), "levels": levels})
            _check_type(modality, feat, vals)
            codes[sel] = vals
            encoded_feats.append(feat)
        values[rows_i, rows_v, rows_f] = codes
        dim = f"{modality}_feature"
        data_vars[modality] = (("individual", "visit", dim), values)
        data_vars[f"{modality}_mask"] = (("individual", "visit", dim), ~np.isnan(values))
        coords.update(feature_coords(modality, encoded_feats))
        schemas.append((modality, encoded_feats))
    return data_vars, coords, schemas, ref, calendar


def intervention_vars(
    table: pd.DataFrame | None, reference: pd.Series, individuals: pd.Index
) -> dict:
    """Data variables for the canonical intervention table.

    ``start``/``end`` may be calendar dates (converted to ``start_t``/``end_t`` days
    since each individual's reference time) or, for cohorts without a calendar,
    ``start_t``/``end_t`` may be given directly.
    """
    cols = INTERVENTION_COLUMNS
    if table is None:
        table = pd.DataFrame({c: [] for c in cols})
    if "individual" not in table.columns:
        raise ValueError("intervention table lacks the 'individual' column")
    if "agent" not in table.columns:
        raise ValueError("intervention table lacks the 'agent' column")
    unknown = set(table.columns) - set(cols)
    if unknown:
        raise ValueError(
            f"intervention table has unknown columns {sorted(unknown)}; known: {list(cols)}"
        )
    t = table.copy()
    t["individual"] = t["individual"].astype(str)
    t = t[t["individual"].isin(individuals.astype(str))].reset_index(drop=True)
    ref = reference.reindex(t["individual"]).to_numpy()
    for edge in ("start", "end"):
        if edge in t.columns:
            dt, calendar = _as_days(t[edge]) if len(t) else (t[edge], True)
            if calendar:
                t[edge] = dt
                if f"{edge}_t" not in t.columns:
                    t[f"{edge}_t"] = (dt.to_numpy() - ref) / DAY
            else:  # numeric start/end are already days since reference
                t[f"{edge}_t"] = dt.to_numpy()
                t[edge] = pd.NaT
    out = {}
    n = len(t)
    for c, kind in cols.items():
        if kind == "str":
            col = t[c] if c in t.columns else pd.Series([""] * n)
            arr = np.array(["" if pd.isna(v) else str(v) for v in col], dtype=object)
        elif kind == "datetime":
            col = t[c] if c in t.columns else pd.Series([pd.NaT] * n)
            arr = pd.to_datetime(col).to_numpy(dtype="datetime64[ns]")
        else:
            col = t[c] if c in t.columns else pd.Series([np.nan] * n)
            arr = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        out[f"intervention_{c}"] = ("intervention", arr)
    return out


def covariate_vars(table: pd.DataFrame | None, individuals: pd.Index) -> dict:
    """Data variables ``covariate_<name>`` (individual) from a table indexed by id."""
    if table is None:
        return {}
    if table.index.has_duplicates:
        raise ValueError("covariate table has duplicate individual ids")
    table = table.copy()
    table.index = table.index.astype(str)
    table = table.reindex(individuals.astype(str))
    out = {}
    for c in table.columns:
        col = table[c]
        if pd.api.types.is_datetime64_any_dtype(col):
            arr = pd.to_datetime(col, utc=True).dt.tz_localize(None).to_numpy("datetime64[ns]")
        elif pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            arr = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            arr = np.array(["" if pd.isna(v) else str(v) for v in col], dtype=object)
        out[f"covariate_{c}"] = ("individual", arr)
    return out


def check_feature_types(types: Mapping[str, str]) -> None:
    for k, v in types.items():
        if v not in FEATURE_TYPES:
            raise ValueError(f"feature {k!r}: unknown type {v!r}; known: {FEATURE_TYPES}")
