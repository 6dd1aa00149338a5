"""Read a plain table (CSV file or DataFrame) into a :class:`~twin.cohort.Cohort`.

One row of the table is one record: the per-individual columns (static modalities,
covariates) of an individual, and optionally measurements at one time (longitudinal
modalities on ``time_column``).  A material batch tested at several ages, a patient
seen at several visits or one steel per row all fit.

Bad rows never abort the import.  A row is skipped, counted and reported when it has

* no id (``missing_id``);
* a value that is not a number in a numeric column (``non_numeric``), a binary value
  other than 0/1 (``not_binary``), a count that is not a non-negative integer
  (``not_count``);
* a negative value in a ``nonnegative`` column (``negative``) or a value outside its
  ``bounds`` (``out_of_range``);
* an unreadable time (``bad_time``), or no time but a longitudinal value
  (``missing_time``);
* a per-individual value that disagrees with the value the other rows of the same
  individual give (``conflicting_static``; the value most rows agree on wins, a tie
  skips every row of that individual that gives the column);
* the same individual and time as another row with a different measured value
  (``conflicting_duplicate``; all rows of that (id, time) are skipped unless
  ``duplicates="replicates"``).

Rows identical in every used column are copies of one record: the first is kept and
the others are counted (``n_copies_dropped``).  Rows of one (id, time) that differ
only where one of them is empty are merged.  Empty cells (``""``, ``NA``, ``NaN``, ...)
are missing values, never errors: missing characterisation is allowed.

The report (see :func:`read_table_cohort`) is stored as JSON in the cohort attribute
``twin_table_report``; read it back with ``cohort.attr_json("twin_table_report")``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from twin.cohort import Cohort
from twin.cohort.schema import FEATURE_TYPES

__all__ = ["REPORT_ATTR", "TIME_UNITS", "read_table_cohort"]

log = logging.getLogger(__name__)

#: Cohort attribute holding the JSON import report.
REPORT_ATTR = "twin_table_report"
#: Skipped rows whose messages the import's warning prints (all are in the report).
SHOWN_ISSUES = 3

#: Accepted ``time_unit`` values (UCUM codes and plain names) and their length in days.
TIME_UNITS: dict[str, float] = {
    "s": 1 / 86400,
    "min": 1 / 1440,
    "h": 1 / 24,
    "d": 1.0,
    "wk": 7.0,
    "a": 365.25,
    "seconds": 1 / 86400,
    "minutes": 1 / 1440,
    "hours": 1 / 24,
    "days": 1.0,
    "weeks": 7.0,
    "years": 365.25,
}

_TRUE = {"true", "yes"}
_FALSE = {"false", "no"}

Derived = Mapping[str, Mapping[str, Callable[[pd.DataFrame], pd.Series | np.ndarray]]]


def read_table_cohort(
    source: str | os.PathLike | pd.DataFrame,
    *,
    id_column: str | None,
    modalities: Mapping[str, Sequence[str]] | None = None,
    longitudinal: Mapping[str, Sequence[str]] | None = None,
    time_column: str | None = None,
    time_unit: str = "d",
    units: Mapping[str, str] | None = None,
    types: Mapping[str, str] | None = None,
    displays: Mapping[str, str] | None = None,
    rename: Mapping[str, str] | None = None,
    covariates: Sequence[str] = (),
    nonnegative: Sequence[str] = (),
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    derived: Derived | None = None,
    duplicates: str = "skip",
    id_prefix: str = "row-",
    interventions: pd.DataFrame | None = None,
    attrs: Mapping[str, object] | None = None,
    source_name: str | None = None,
    max_issues: int = 1000,
    csv_options: Mapping[str, object] | None = None,
) -> Cohort:
    """Build a cohort from one table, skipping and reporting bad rows.

    Parameters
    ----------
    source
        Path of a CSV file, or a DataFrame (one record per row).
    id_column
        Column holding the individual id (batch, mix, specimen, patient).  ``None``:
        every row is its own individual, named ``f"{id_prefix}{n}"`` with ``n`` the
        1-based data row number, zero-padded (the ids then depend on row order).
    modalities
        Static modalities, ``{name: [columns]}``: one value per individual.  When an
        individual has several rows, each must give the same value (or leave it empty).
    longitudinal
        Longitudinal modalities, ``{name: [columns]}``, measured at ``time_column``.
    time_column
        Time of each row's measurements; needed with ``longitudinal``.  Numbers are
        durations in ``time_unit`` (stored as days, no calendar: e.g. a material's
        age); otherwise values are parsed as ISO dates (a calendar cohort).
    time_unit
        Unit of a numeric ``time_column``: one of :data:`TIME_UNITS`.
    units, types, displays
        Per column (or derived feature): unit (UCUM where one exists), feature type
        (``continuous`` by default; ``binary``, ``categorical``, ``count``) and a
        human-readable name (default: the column header when the column is renamed).
    rename
        ``{column: feature name}``; messages keep naming the column of the file.
    covariates
        Per-individual columns stored as covariates (numeric when every value is a
        number, otherwise text).
    nonnegative
        Columns whose values cannot be negative (amounts, strengths, ages).
    bounds
        ``{column: (low, high)}`` inclusive limits; ``None`` leaves a side open.
    derived
        ``{modality: {feature: f}}``: features computed after validation from the
        static modality's per-individual table (columns named by feature; float).
        ``f`` returns one value per individual; infinities become missing.
    duplicates
        ``"skip"`` (default): rows with the same id and time and different measured
        values are all skipped and reported.  ``"replicates"``: they are kept as
        replicate observations (the cohort opens another visit slot at that time).
    id_prefix
        Prefix of generated ids when ``id_column`` is ``None``.
    interventions
        Passed through to :meth:`Cohort.from_tables` (processing steps, treatments).
    attrs
        Extra cohort attributes.
    source_name
        Name used in messages and the report; default: the path, or ``"<DataFrame>"``.
    max_issues
        At most this many issues (and merged rows) are listed in the report; the
        counts are always complete.
    csv_options
        Extra keyword arguments of :func:`pandas.read_csv` (e.g. ``sep``).  Line
        numbers in messages assume one header line and no line breaks inside quoted
        fields.

    Returns
    -------
    Cohort
        With the attribute ``twin_table_report``: JSON with ``source``, ``n_rows``,
        ``n_rows_kept``, ``n_rows_skipped``, ``n_copies_dropped``, ``n_rows_merged``,
        ``n_blank_rows``, ``n_individuals``, ``counts`` (issues per reason),
        ``issues`` (``row``, ``id``, ``column``, ``value``, ``reason``, ``message``;
        ``row`` is the file's line number, header = line 1, or the DataFrame's index
        label), ``copies`` (``row``, ``copy_of``), ``merged`` (``row``,
        ``merged_into``), ``replicate_groups``, ``derived``, ``unused_columns``,
        ``time``.  ``n_rows = n_rows_kept + n_rows_skipped + n_copies_dropped``.

    Raises
    ------
    ValueError
        For a problem with the call rather than with a row: a named column missing
        from the table, a column used twice, an unknown type or time unit.
    FileNotFoundError
        If ``source`` is a path that does not exist.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"batch": ["b1", "b1", "b2"], "cement": [300, 300, -1],
    ...                   "age": [7, 28, 7], "strength": [20.0, 35.0, 18.0]})
    >>> c = read_table_cohort(t, id_column="batch", modalities={"mix": ["cement"]},
    ...                       longitudinal={"strength": ["strength"]}, time_column="age",
    ...                       nonnegative=["cement"])
    >>> list(c.individuals), c.attr_json("twin_table_report")["counts"]
    (['b1'], {'negative': 1})
    """
    spec = _Spec.build(
        id_column=id_column,
        modalities=modalities,
        longitudinal=longitudinal,
        time_column=time_column,
        time_unit=time_unit,
        types=types,
        rename=rename,
        covariates=covariates,
        nonnegative=nonnegative,
        bounds=bounds,
        derived=derived,
        duplicates=duplicates,
    )
    table, name, where = _load(source, source_name, csv_options)
    spec.check_columns(table, name)
    blank = table.isna().all(axis=1).to_numpy() if len(table.columns) else np.zeros(0, bool)
    rows = _Rows(table, name, where, spec, max_issues, blank)
    rows.parse(id_prefix)
    rows.drop_copies()
    rows.check_static_agreement()
    rows.check_duplicates()
    return rows.to_cohort(
        units=dict(units or {}),
        displays=dict(displays or {}),
        interventions=interventions,
        attrs=attrs,
    )


# ---------------------------------------------------------------------- specification
@dataclass(frozen=True)
class _Spec:
    """The validated description of which column goes where."""

    id_column: str | None
    static: dict[str, list[str]]
    longi: dict[str, list[str]]
    time_column: str | None
    time_unit: str
    types: dict[str, str]
    rename: dict[str, str]
    covariates: list[str]
    limits: dict[str, tuple[float, float]]
    derived: dict[str, dict]
    duplicates: str

    @classmethod
    def build(
        cls,
        *,
        id_column: str | None,
        modalities: Mapping[str, Sequence[str]] | None,
        longitudinal: Mapping[str, Sequence[str]] | None,
        time_column: str | None,
        time_unit: str,
        types: Mapping[str, str] | None,
        rename: Mapping[str, str] | None,
        covariates: Sequence[str],
        nonnegative: Sequence[str],
        bounds: Mapping[str, tuple[float | None, float | None]] | None,
        derived: Derived | None,
        duplicates: str,
    ) -> _Spec:
        static = {str(m): [str(c) for c in cols] for m, cols in (modalities or {}).items()}
        longi = {str(m): [str(c) for c in cols] for m, cols in (longitudinal or {}).items()}
        if isinstance(covariates, str) or isinstance(nonnegative, str):
            raise ValueError("covariates and nonnegative take a list of column names")
        if not static and not longi:
            raise ValueError("give at least one static or longitudinal modality")
        both = set(static) & set(longi)
        if both:
            raise ValueError(f"modalities {sorted(both)} given as both static and longitudinal")
        if longi and time_column is None:
            raise ValueError("longitudinal modalities need a time_column")
        if time_column is not None and not longi:
            raise ValueError(f"time_column {time_column!r} given but no longitudinal modality")
        if time_unit not in TIME_UNITS:
            raise ValueError(f"unknown time_unit {time_unit!r}; known: {sorted(TIME_UNITS)}")
        if duplicates not in ("skip", "replicates"):
            raise ValueError(f"duplicates must be 'skip' or 'replicates', got {duplicates!r}")
        types = {str(k): str(v) for k, v in (types or {}).items()}
        for col, t in types.items():
            if t not in FEATURE_TYPES:
                raise ValueError(f"column {col!r}: unknown type {t!r}; known: {FEATURE_TYPES}")
        # every column may be used once: as id, time, covariate or a modality feature
        seen: dict[str, str] = {}
        uses = [(id_column, "the id column"), (time_column, "the time column")]
        uses += [(c, "a covariate") for c in covariates]
        uses += [(c, f"modality {m!r}") for m, cols in {**static, **longi}.items() for c in cols]
        for col, use in uses:
            if col is None:
                continue
            if col in seen:
                raise ValueError(f"column {col!r} is used twice: as {seen[col]} and as {use}")
            seen[col] = use
        rename = {str(k): str(v) for k, v in (rename or {}).items()}
        derived = {str(m): dict(f) for m, f in (derived or {}).items()}
        for m, funcs in derived.items():
            if m not in static:
                raise ValueError(f"derived features need a static modality; {m!r} is not one")
            names = [rename.get(c, c) for c in static[m]]
            clash = set(funcs) & set(names)
            if clash:
                raise ValueError(f"derived features {sorted(clash)} clash with columns of {m!r}")
        for m, cols in {**static, **longi}.items():
            if not cols:
                raise ValueError(f"modality {m!r} has no columns")
            names = [rename.get(c, c) for c in cols]
            if len(set(names)) != len(names):
                raise ValueError(f"modality {m!r}: two columns are renamed to the same feature")
        lims: dict[str, tuple[float, float]] = {}
        for col in nonnegative:
            lims[str(col)] = (0.0, np.inf)
        for col, (lo, hi) in (bounds or {}).items():
            old = lims.get(str(col), (-np.inf, np.inf))
            lo = -np.inf if lo is None else float(lo)
            hi = np.inf if hi is None else float(hi)
            lims[str(col)] = (max(lo, old[0]), min(hi, old[1]))
        return cls(
            id_column=id_column,
            static=static,
            longi=longi,
            time_column=time_column,
            time_unit=time_unit,
            types=types,
            rename=rename,
            covariates=[str(c) for c in covariates],
            limits=lims,
            derived=derived,
            duplicates=duplicates,
        )

    @property
    def static_columns(self) -> list[str]:
        return [c for cols in self.static.values() for c in cols]

    @property
    def longi_columns(self) -> list[str]:
        return [c for cols in self.longi.values() for c in cols]

    def used_columns(self) -> list[str]:
        cols = [self.id_column, self.time_column, *self.covariates]
        cols += self.static_columns + self.longi_columns
        return [c for c in cols if c is not None]

    def check_columns(self, table: pd.DataFrame, name: str) -> None:
        have = [str(c) for c in table.columns]
        missing = [c for c in self.used_columns() if c not in have]
        missing += [c for c in self.limits if c not in have and c not in missing]
        if missing:
            more = f" ... ({len(missing)} in all)" if len(missing) > 8 else ""
            raise ValueError(
                f"{name}: {separator_hint(have)}missing column(s) {missing[:8]}{more}; "
                f"the table has {[h[:60] for h in have[:8]]}"
                + (f" ... ({len(have)} in all)" if len(have) > 8 else "")
            )


def separator_hint(header: Sequence[str]) -> str:
    """``"is the file ';'-separated? ..."`` when a one-column header holds ``;``, tab or ``|``."""
    if len(header) != 1:
        return ""
    sep = next((c for c in ";\t|" if c in header[0]), None)
    if sep is None:
        return ""
    return (
        f"one column whose name holds {sep!r}: is the file {sep!r}-separated? "
        f"Pass csv_options={{'sep': {sep!r}}}; "
    )


# ---------------------------------------------------------------------- loading
def _load(
    source: str | os.PathLike | pd.DataFrame,
    source_name: str | None,
    csv_options: Mapping[str, object] | None,
) -> tuple[pd.DataFrame, str, list[str]]:
    """The table as object cells (None where empty), its name and each row's location."""
    if isinstance(source, pd.DataFrame):
        name = source_name or "<DataFrame>"
        table = source.copy()
        table.columns = [str(c) for c in table.columns]
        if table.columns.has_duplicates:
            dup = table.columns[table.columns.duplicated()].unique().tolist()
            raise ValueError(f"{name}: duplicate column names {dup}")
        where = [f"row {label}" for label in source.index]
        labels = list(source.index)
    else:
        path = Path(source)
        name = source_name or str(source)
        if not path.exists():
            raise FileNotFoundError(f"no table at {path}")
        options = {"skip_blank_lines": False, **dict(csv_options or {})}
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=True, **options)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise ValueError(f"{name}: not a readable CSV table ({exc})") from exc
        labels = [i + 2 for i in range(len(table))]  # header is line 1
        where = [f"line {n}" for n in labels]
    # object cells, None where empty (DataFrame.map would re-infer a string dtype with NaN)
    table = pd.DataFrame(
        {c: np.array([_clean_cell(v) for v in table[c]], dtype=object) for c in table.columns},
        columns=table.columns,
        dtype=object,
    )
    table.attrs["row_labels"] = labels
    return table, name, where


def _clean_cell(v: object) -> object:
    """Strip strings; empty strings and NaN/NA become None."""
    if v is None:
        return None
    if isinstance(v, str):
        v = v.strip()
        return v or None
    if isinstance(v, float | np.floating) and np.isnan(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def _to_float(cells: pd.Series) -> np.ndarray:
    """Numbers of a cell column; NaN where empty or not a number."""
    vals = [int(v) if isinstance(v, bool | np.bool_) else v for v in cells]
    out = pd.to_numeric(pd.Series(vals, dtype=object), errors="coerce")
    return np.array(out.to_numpy(dtype=np.float64, na_value=np.nan), copy=True)


def _json_value(v: object) -> object:
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v if isinstance(v, str | int | float | bool) else str(v)


# ---------------------------------------------------------------------- row checks
class _Rows:
    """Parsed cells, the rows still kept, and the issues found so far."""

    def __init__(
        self,
        table: pd.DataFrame,
        name: str,
        where: list[str],
        spec: _Spec,
        max_issues: int,
        blank: np.ndarray,
    ) -> None:
        self.table = table
        self.name = name
        self.where = where
        self.labels = table.attrs["row_labels"]
        self.spec = spec
        self.max_issues = max_issues
        self.blank = blank
        self.keep = ~blank
        self.issues: list[dict] = []
        self.counts: dict[str, int] = {}
        self.skipped = np.zeros(len(table), dtype=bool)
        self.copies = 0
        self.copy_list: list[dict] = []
        self.merged: list[dict] = []
        self.n_merged = 0
        self.replicate_groups = 0
        self.values: dict[str, np.ndarray] = {}  # parsed columns (float or object)
        self.ids = np.array([None] * len(table), dtype=object)
        self.time: pd.Series | None = None
        self.calendar = False

    # -------------------------------------------------------------- bookkeeping
    def flag(self, i: int, column: str | None, reason: str, detail: str) -> None:
        """Record an issue of row ``i`` and skip the row."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.skipped[i] = True
        self.keep[i] = False
        if len(self.issues) < self.max_issues:
            col_txt = f", column {column!r}" if column is not None else ""
            id_txt = f" (id {self.ids[i]!r})" if self.ids[i] is not None else ""
            cell = self.table.at[i, column] if column is not None else None
            self.issues.append(
                {
                    "row": _json_value(self.labels[i]),
                    "id": self.ids[i],
                    "column": column,
                    "value": _json_value(cell),
                    "reason": reason,
                    "message": f"{self.name}: {self.where[i]}{col_txt}{id_txt}: {detail}; "
                    "row skipped",
                }
            )

    def _rows_text(self, idx: Sequence[int]) -> str:
        return ", ".join(self.where[j] for j in idx)

    # -------------------------------------------------------------- parsing
    def parse(self, id_prefix: str) -> None:
        spec, t = self.spec, self.table
        n = len(t)
        if spec.id_column is None:
            width = len(str(n))
            self.ids = np.array([f"{id_prefix}{i + 1:0{width}d}" for i in range(n)], dtype=object)
        else:
            self.ids = np.array(
                [None if v is None else str(v) for v in t[spec.id_column]], dtype=object
            )
        for i in np.nonzero(~self.blank)[0]:
            if self.ids[i] is None:
                self.flag(i, spec.id_column, "missing_id", "no individual id")
        for col in spec.static_columns + spec.longi_columns:
            self._parse_feature(col, spec.types.get(col, "continuous"))
        for col in spec.covariates:
            nums = _to_float(t[col])
            given = t[col].notna().to_numpy()
            if (np.isfinite(nums) | ~given).all():
                self.values[col] = nums
            else:
                self.values[col] = np.array(
                    [None if v is None else str(v) for v in t[col]], dtype=object
                )
        for col, (lo, hi) in spec.limits.items():
            self._check_limits(col, lo, hi)
        if spec.time_column is not None:
            self._parse_time()

    def _parse_feature(self, col: str, ftype: str) -> None:
        cells = self.table[col]
        given = cells.notna().to_numpy()
        if ftype == "categorical":
            self.values[col] = np.array([None if v is None else str(v) for v in cells], object)
            return
        cells_bin = cells
        if ftype == "binary":
            cells_bin = cells.map(
                lambda v: (
                    (1 if v.lower() in _TRUE else 0 if v.lower() in _FALSE else v)
                    if isinstance(v, str)
                    else v
                )
            )
        nums = _to_float(cells_bin)
        for i in np.nonzero(~self.blank & given & ~np.isfinite(nums))[0]:
            self.flag(i, col, "non_numeric", f"{cells[i]!r} is not a number")
        bad = np.zeros(len(nums), dtype=bool)
        reason, detail = "", ""
        with np.errstate(invalid="ignore"):
            if ftype == "binary":
                bad = np.isfinite(nums) & ~np.isin(nums, (0.0, 1.0))
                reason, detail = "not_binary", "binary values must be 0 or 1"
            elif ftype == "count":
                bad = np.isfinite(nums) & ((nums < 0) | (nums != np.round(nums)))
                reason, detail = "not_count", "counts must be non-negative integers"
        for i in np.nonzero(~self.blank & bad)[0]:
            self.flag(i, col, reason, f"{cells[i]!r}: {detail}")
        nums[~np.isfinite(nums)] = np.nan
        self.values[col] = nums

    def _check_limits(self, col: str, lo: float, hi: float) -> None:
        if col not in self.values or self.values[col].dtype == object:
            nums = _to_float(self.table[col])
        else:
            nums = self.values[col]
        with np.errstate(invalid="ignore"):
            low, high = nums < lo, nums > hi
        for i in np.nonzero(~self.blank & (low | high))[0]:
            if low[i] and lo == 0.0:
                self.flag(
                    i,
                    col,
                    "negative",
                    f"negative value {nums[i]:g} where only values >= 0 are possible",
                )
            else:
                self.flag(i, col, "out_of_range", f"value {nums[i]:g} outside [{lo:g}, {hi:g}]")

    def _parse_time(self) -> None:
        col = self.spec.time_column
        cells = self.table[col]
        given = cells.notna().to_numpy()
        nums = _to_float(cells)
        n_num = int(np.isfinite(nums).sum())
        dates = pd.Series(pd.NaT, index=cells.index, dtype="datetime64[ns]")
        if n_num < int(given.sum()):
            texts = cells.map(lambda v: None if v is None else str(v))
            parsed = pd.to_datetime(texts, errors="coerce", utc=True, format="ISO8601")
            dates = parsed.dt.tz_localize(None).astype("datetime64[ns]")
        n_dates = int(dates.notna().sum())
        self.calendar = n_dates > n_num
        if self.calendar:
            ok = dates.notna().to_numpy()
            self.time = dates
        else:
            ok = np.isfinite(nums)
            self.time = pd.Series(nums * TIME_UNITS[self.spec.time_unit])
        kind = "date" if self.calendar else "number"
        for i in np.nonzero(~self.blank & given & ~ok)[0]:
            self.flag(i, col, "bad_time", f"{cells[i]!r} is not a {kind}")
        measured = np.zeros(len(cells), dtype=bool)
        for c in self.spec.longi_columns:
            v = self.values[c]
            measured |= pd.notna(v) if v.dtype == object else np.isfinite(v)
        for i in np.nonzero(~self.blank & ~given & measured)[0]:
            self.flag(i, col, "missing_time", "measured values but no time")

    # -------------------------------------------------------------- agreement
    def _key_frame(self, columns: Sequence[str]) -> pd.DataFrame:
        frame = {"__id": self.ids}
        if self.time is not None:
            frame["__time"] = self.time.to_numpy()
        for c in columns:
            frame[c] = self.values[c]
        return pd.DataFrame(frame)

    def drop_copies(self) -> None:
        """Rows identical in every used column: keep the first."""
        cols = self.spec.static_columns + self.spec.longi_columns + self.spec.covariates
        frame = self._key_frame(cols)[self.keep]
        dup = frame.duplicated(keep="first").to_numpy()
        group = frame.groupby(list(frame.columns), dropna=False, sort=False).ngroup().to_numpy()
        origin = dict(zip(group[~dup], frame.index[~dup], strict=True))
        self.copies = int(dup.sum())
        for pos, grp in zip(frame.index[dup], group[dup], strict=True):
            self.keep[pos] = False
            if len(self.copy_list) < self.max_issues:
                self.copy_list.append(
                    {
                        "row": _json_value(self.labels[pos]),
                        "id": self.ids[pos],
                        "copy_of": _json_value(self.labels[origin[grp]]),
                    }
                )

    def check_static_agreement(self) -> None:
        """Per-individual columns must agree across an individual's rows."""
        ids = pd.Series(self.ids)
        multi = self.keep & ids.duplicated(keep=False).to_numpy()
        if not multi.any():
            return
        conflicts: list[tuple[int, str, str]] = []
        for col in self.spec.static_columns + self.spec.covariates:
            vals = self.values[col]
            sub = pd.DataFrame({"id": ids.to_numpy(), "v": vals, "pos": np.arange(len(vals))})
            sub = sub[multi & pd.notna(vals)]
            if sub.empty:
                continue
            stats = sub.groupby(["id", "v"], sort=False)["pos"].agg(["size", "min"])
            stats = stats.reset_index()
            per_id = stats.groupby("id")["v"].size()
            for ident in per_id[per_id > 1].index:
                cand = stats[stats["id"] == ident].sort_values(
                    ["size", "min"], ascending=[False, True]
                )
                rows = sub[sub["id"] == ident]
                top = cand["size"].iloc[0]
                tie = (cand["size"] == top).sum() > 1
                winner = cand["v"].iloc[0]
                cell = self.table[col]  # messages quote the cells as written
                listing = ", ".join(
                    f"{cell[first]!r} in {int(k)} row(s)"
                    for first, k in zip(cand["min"], cand["size"], strict=True)
                )
                for pos, v in zip(rows["pos"], rows["v"], strict=True):
                    if tie:
                        detail = (
                            f"per-individual column is ambiguous for this id "
                            f"({listing}); all rows giving it are skipped"
                        )
                        conflicts.append((int(pos), col, detail))
                    elif v != winner:
                        agree = rows[rows["v"] == winner]["pos"].tolist()
                        detail = (
                            f"value {cell[pos]!r} disagrees with {cell[agree[0]]!r} given for "
                            f"the same id in {self._rows_text(agree[:5])}"
                            + (" ..." if len(agree) > 5 else "")
                        )
                        conflicts.append((int(pos), col, detail))
        for pos, col, detail in sorted(conflicts):
            self.flag(pos, col, "conflicting_static", detail)

    def check_duplicates(self) -> None:
        """Rows of one (id, time): merge, skip on conflict, or keep as replicates."""
        if self.time is None:
            ident = pd.Series(self.ids)
            groups = ident[self.keep].groupby(ident[self.keep], sort=False).groups
            for idx in groups.values():
                self._merge(list(idx))
            return
        frame = self._key_frame(self.spec.longi_columns)
        frame = frame[self.keep & frame["__time"].notna().to_numpy()]
        grouped = frame.groupby(["__id", "__time"], sort=False).groups
        for idx in grouped.values():
            idx = list(idx)
            if len(idx) < 2:
                continue
            diff = []
            for c in self.spec.longi_columns:
                vals = pd.Series(self.values[c][idx]).dropna()
                if vals.nunique() > 1:
                    diff.append(c)
            if not diff:
                self._merge(idx)
            elif self.spec.duplicates == "replicates":
                self.replicate_groups += 1
            else:
                tcol = self.spec.time_column
                t_txt = self.table.at[idx[0], tcol]
                for i in idx:
                    others = [j for j in idx if j != i]
                    for c in diff:
                        other_vals = [self.table.at[j, c] for j in others]
                        self.flag(
                            i,
                            c,
                            "conflicting_duplicate",
                            f"value {self.table.at[i, c]!r} conflicts with {other_vals} in "
                            f"{self._rows_text(others)} for the same id and {tcol} {t_txt}; "
                            "every row of this id and time is skipped (duplicates='replicates' "
                            "keeps them as replicate observations)",
                        )

    def _merge(self, idx: list[int]) -> None:
        if len(idx) < 2:
            return
        self.n_merged += len(idx) - 1
        for j in idx[1:]:
            if len(self.merged) < self.max_issues:
                self.merged.append(
                    {
                        "row": _json_value(self.labels[j]),
                        "id": self.ids[j],
                        "merged_into": _json_value(self.labels[idx[0]]),
                    }
                )

    # -------------------------------------------------------------- output
    def _feature(self, col: str) -> str:
        return self.spec.rename.get(col, col)

    def to_cohort(
        self,
        units: dict[str, str],
        displays: dict[str, str],
        interventions: pd.DataFrame | None,
        attrs: Mapping[str, object] | None,
    ) -> Cohort:
        spec = self.spec
        kept = np.nonzero(self.keep)[0]
        ids = pd.Series(self.ids[kept])
        individuals = list(pd.unique(ids))

        def per_individual(cols: Sequence[str]) -> pd.DataFrame:
            # rows of one individual agree (checked), so the first given value is the value
            frame = pd.DataFrame({c: self.values[c][kept] for c in cols})
            frame.index = ids.to_numpy()
            return frame.groupby(level=0, sort=False).first().reindex(individuals)

        info: dict[str, dict[str, dict]] = {}

        def meta(col: str, feature: str) -> dict:
            out = {"type": spec.types.get(col, "continuous")}
            unit = units.get(col, units.get(feature))
            if unit:
                out["unit"] = unit
            display = displays.get(col, displays.get(feature))
            if display is None and feature != col:
                display = col
            if display:
                out["display"] = display
            return out

        tables: dict[str, pd.DataFrame] = {}
        derived_report: dict[str, list[str]] = {}
        for m, cols in spec.static.items():
            t = per_individual(cols)
            t.columns = [self._feature(c) for c in cols]
            info[m] = {self._feature(c): meta(c, self._feature(c)) for c in cols}
            for fname, func in spec.derived.get(m, {}).items():
                numeric = t.apply(pd.to_numeric, errors="coerce").astype(np.float64)
                try:
                    res = func(numeric)
                except Exception as exc:  # a user formula; name it in the error
                    raise ValueError(
                        f"{self.name}: derived feature {fname!r} of modality {m!r} failed: {exc}"
                    ) from exc
                res = np.array(res, dtype=np.float64).reshape(-1)
                if res.shape != (len(t),):
                    raise ValueError(
                        f"derived feature {fname!r} returned {res.shape[0]} values for "
                        f"{len(t)} individuals"
                    )
                res[~np.isfinite(res)] = np.nan
                t[fname] = res
                info[m][fname] = meta(fname, fname)
                derived_report.setdefault(m, []).append(fname)
            tables[m] = t

        longi: dict[str, pd.DataFrame] = {}
        if spec.longi:
            times = self.time.to_numpy()[kept]
            for m, cols in spec.longi.items():
                parts = []
                for c in cols:
                    v = self.values[c][kept]
                    has = pd.notna(v)
                    parts.append(
                        pd.DataFrame(
                            {
                                "individual": ids.to_numpy()[has],
                                "time": times[has],
                                "feature": self._feature(c),
                                "value": pd.Series(v[has], dtype=object).to_numpy(),
                            }
                        )
                    )
                frame = pd.concat(parts, ignore_index=True)
                # merged rows repeat a value: one entry per (id, time, feature, value)
                frame = frame.drop_duplicates(["individual", "time", "feature", "value"])
                longi[m] = frame
                info[m] = {self._feature(c): meta(c, self._feature(c)) for c in cols}

        cov = per_individual(spec.covariates) if spec.covariates else None
        used = set(spec.used_columns())
        report = {
            "source": self.name,
            "n_rows": int(len(self.table) - self.blank.sum()),
            "n_rows_kept": int(self.keep.sum()),
            "n_rows_skipped": int(self.skipped.sum()),
            "n_copies_dropped": self.copies,
            "n_rows_merged": self.n_merged,
            "n_blank_rows": int(self.blank.sum()),
            "n_individuals": len(individuals),
            "counts": dict(sorted(self.counts.items())),
            "issues": self.issues,
            "issues_truncated": sum(self.counts.values()) > len(self.issues),
            "copies": self.copy_list,
            "merged": self.merged,
            "replicate_groups": self.replicate_groups,
            "duplicates": spec.duplicates,
            "derived": derived_report,
            "unused_columns": [c for c in self.table.columns if c not in used],
            "time": None
            if spec.time_column is None
            else {
                "column": spec.time_column,
                "calendar": bool(self.calendar),
                "unit": "d",
                "source_unit": None if self.calendar else spec.time_unit,
            },
        }
        if report["n_rows_skipped"]:
            shown = [issue["message"] for issue in self.issues[:SHOWN_ISSUES]]
            more = sum(report["counts"].values()) - len(shown)
            log.warning(
                "%s: skipped %d of %d rows (%s); see the %r attribute%s",
                self.name,
                report["n_rows_skipped"],
                report["n_rows"],
                ", ".join(f"{k} {v}" for k, v in report["counts"].items()),
                REPORT_ATTR,
                "".join(f"\n  {m}" for m in shown)
                + (f"\n  ... and {more} more" if more > 0 else ""),
            )
        return Cohort.from_tables(
            tables,
            longitudinal=longi,
            covariates=cov,
            interventions=interventions,
            feature_info=info,
            individuals=[str(i) for i in individuals],
            attrs={**dict(attrs or {}), REPORT_ATTR: report},
        )
