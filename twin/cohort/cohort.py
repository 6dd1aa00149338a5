"""The :class:`Cohort`: one labelled container for every layer of twin."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from twin._util.atomic import atomic_path
from twin.cohort.build import (
    DAY,
    FORMAT_VERSION,
    INTERVENTION_COLUMNS,
    covariate_vars,
    feature_coords,
    features_from_coords,
    intervention_vars,
    longitudinal_blocks,
    static_block,
)
from twin.cohort.schema import CohortSchema, FeatureSchema, ModalitySchema

IndividualSelector = Sequence[str] | Sequence[int] | np.ndarray | slice | None


class Cohort:
    """Multimodal, longitudinal data of a set of individuals (patients, material batches).

    A thin, validated wrapper around an :class:`xarray.Dataset` (``cohort.data``)
    whose layout is described in :mod:`twin.cohort.build`.  Every value has a mask;
    unobserved entries are NaN and masked, never zero-padded.

    Build one with :meth:`from_tables`, :func:`twin.read_fhir` or :meth:`load`.

    Examples
    --------
    >>> import pandas as pd
    >>> mrna = pd.DataFrame({"g1": [0.1, 0.2], "g2": [1.0, None]}, index=["a", "b"])
    >>> cohort = Cohort.from_tables({"mrna": mrna})
    >>> cohort.mask("mrna").tolist()
    [[True, True], [True, False]]
    """

    def __init__(self, data: xr.Dataset):
        if "individual" not in data.coords:
            raise ValueError("a cohort dataset needs an 'individual' coordinate")
        if "twin_modalities" not in data.attrs:
            raise ValueError("a cohort dataset needs the 'twin_modalities' attribute")
        self.data = data
        self._modalities: dict[str, dict] = json.loads(data.attrs["twin_modalities"])
        for m in self._modalities:
            if m not in data or f"{m}_mask" not in data:
                raise ValueError(f"cohort dataset lacks variables for modality {m!r}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_tables(
        cls,
        tables: Mapping[str, pd.DataFrame] | None = None,
        *,
        longitudinal: Mapping[str, pd.DataFrame] | None = None,
        covariates: pd.DataFrame | None = None,
        interventions: pd.DataFrame | None = None,
        feature_info: Mapping[str, pd.DataFrame | Mapping] | None = None,
        feature_types: Mapping[str, Mapping[str, str]] | None = None,
        reference_time: pd.Series | None = None,
        individuals: Sequence[str] | None = None,
        attrs: Mapping[str, object] | None = None,
    ) -> Cohort:
        """Build a cohort from plain tables.

        Parameters
        ----------
        tables
            Static modalities: ``{name: DataFrame}``, each indexed by individual id with
            one column per feature; NaN marks a missing value.  Numeric columns are
            continuous, bool columns binary, string/categorical columns categorical
            (override with ``feature_types``).  Individuals absent from a table have
            the whole modality masked.
        longitudinal
            ``{name: DataFrame}`` in long form with columns ``individual``, ``time``
            (datetime, or numeric days for cohorts without a calendar, e.g. a
            material's age), ``feature``, ``value``.
        covariates
            Table indexed by individual id (age, sex, site/batch, ...).
        interventions
            Table with the columns of :data:`twin.cohort.build.INTERVENTION_COLUMNS`
            (``individual`` and ``agent`` required).
        feature_info
            Per modality, a table indexed by feature name with any of the columns
            ``unit, system, code, display, type, levels``.
        feature_types
            Per modality, ``{feature: type}`` overriding inferred types.
        reference_time
            Per individual time zero of ``visit_t``; defaults to the first observation.
        individuals
            Order and set of individuals; defaults to the sorted union of all tables.
        attrs
            Extra dataset attributes (provenance, ingestion report, ...); values must
            be str/number, or JSON-serialisable (stored as JSON strings).
        """
        tables = dict(tables or {})
        longitudinal = dict(longitudinal or {})
        feature_info = dict(feature_info or {})
        feature_types = dict(feature_types or {})
        overlap = set(tables) & set(longitudinal)
        if overlap:
            raise ValueError(f"modalities {sorted(overlap)} given as both static and longitudinal")
        if individuals is None:
            ids: set[str] = set()
            for t in tables.values():
                ids.update(map(str, t.index))
            for t in longitudinal.values():
                ids.update(map(str, t["individual"]))
            if covariates is not None:
                ids.update(map(str, covariates.index))
            individuals = sorted(ids)
        index = pd.Index([str(i) for i in individuals], dtype=object)
        if index.has_duplicates:
            raise ValueError("individual ids must be unique")

        data_vars: dict = {}
        coords: dict = {"individual": ("individual", np.array(index, dtype=object))}
        modalities: dict[str, dict] = {}
        for name, table in tables.items():
            t = table.copy()
            t.index = t.index.astype(str)
            dv, co, _ = static_block(
                name, t, index, feature_info.get(name), feature_types.get(name)
            )
            data_vars.update(dv)
            coords.update(co)
            modalities[name] = {"longitudinal": False}
        _warn_if_disjoint(tables)
        ldv, lco, _, ref, calendar = longitudinal_blocks(
            longitudinal, index, feature_info, feature_types, reference_time
        )
        data_vars.update(ldv)
        coords.update(lco)
        for name in longitudinal:
            modalities[name] = {"longitudinal": True}
        data_vars["reference_time"] = ("individual", ref.to_numpy(dtype="datetime64[ns]"))
        data_vars.update(covariate_vars(covariates, index))
        data_vars.update(intervention_vars(interventions, ref, index))
        ds_attrs = {
            "twin_format_version": FORMAT_VERSION,
            "twin_modalities": json.dumps(modalities),
            "twin_calendar": int(calendar),
        }
        for k, v in (attrs or {}).items():
            ds_attrs[k] = v if isinstance(v, str | int | float) else json.dumps(v, default=str)
        return cls(xr.Dataset(data_vars, coords=coords, attrs=ds_attrs))

    # ------------------------------------------------------------------ structure
    @property
    def individuals(self) -> np.ndarray:
        """Individual ids, in cohort order."""
        return self.data["individual"].values

    @property
    def n_individuals(self) -> int:
        return self.data.sizes["individual"]

    def __len__(self) -> int:
        return self.n_individuals

    @property
    def modalities(self) -> list[str]:
        return list(self._modalities)

    @property
    def static_modalities(self) -> list[str]:
        return [m for m, d in self._modalities.items() if not d["longitudinal"]]

    @property
    def longitudinal_modalities(self) -> list[str]:
        return [m for m, d in self._modalities.items() if d["longitudinal"]]

    @property
    def n_visits(self) -> int:
        return self.data.sizes.get("visit", 0)

    @property
    def schema(self) -> CohortSchema:
        """The modalities, features, types and units of this cohort."""
        return CohortSchema(
            modalities=tuple(
                ModalitySchema(
                    name=m,
                    features=features_from_coords(self.data, m),
                    longitudinal=d["longitudinal"],
                )
                for m, d in self._modalities.items()
            ),
            covariates=tuple(self.covariate_names),
        )

    def features(self, modality: str) -> pd.DataFrame:
        """Feature metadata of a modality (name, type, unit, system, code, display)."""
        self._check_modality(modality)
        return pd.DataFrame([f.to_dict() for f in features_from_coords(self.data, modality)])

    def values(self, modality: str) -> np.ndarray:
        """Values of a modality: (individual, feature) or (individual, visit, feature)."""
        self._check_modality(modality)
        return self.data[modality].values

    def mask(self, modality: str) -> np.ndarray:
        """Boolean mask of observed entries, same shape as :meth:`values`."""
        self._check_modality(modality)
        return self.data[f"{modality}_mask"].values

    def observed(self, modality: str) -> np.ndarray:
        """Per individual: whether any feature of the modality was observed."""
        mask = self.mask(modality)
        return mask.reshape(mask.shape[0], -1).any(axis=1)

    def _check_modality(self, modality: str) -> None:
        if modality not in self._modalities:
            raise KeyError(f"cohort has no modality {modality!r}; modalities: {self.modalities}")

    # ------------------------------------------------------------------ tables
    @property
    def covariate_names(self) -> list[str]:
        return [
            str(v)[len("covariate_") :] for v in self.data.data_vars if v.startswith("covariate_")
        ]

    @property
    def covariates(self) -> pd.DataFrame:
        """Covariates (age, sex, site, ...) indexed by individual id."""
        cols = {n: self.data[f"covariate_{n}"].values for n in self.covariate_names}
        return pd.DataFrame(cols, index=pd.Index(self.individuals, name="individual"))

    @property
    def interventions(self) -> pd.DataFrame:
        """Interventions (treatments, processing steps), one row each."""
        cols = {c: self.data[f"intervention_{c}"].values for c in INTERVENTION_COLUMNS}
        return pd.DataFrame(cols)

    @property
    def reference_time(self) -> pd.Series:
        """Time zero of each individual's ``visit_t`` axis (NaT without a calendar)."""
        return pd.Series(self.data["reference_time"].values, index=self.individuals)

    @property
    def death_t(self) -> pd.Series:
        """Days from each individual's reference time to its recorded death, NaN where none.

        Read from a datetime covariate ``deceased`` (what :func:`twin.read_fhir` takes
        from ``Patient.deceasedDateTime``); NaN when the cohort has no such covariate,
        when it is not a date (e.g. a 0/1 flag) or, for a dated death, without a
        calendar.  ``-inf`` where a numeric covariate ``deceased_flag`` of 1 says the
        individual died and no date is recorded (FHIR ``deceasedBoolean: true``): dead
        by the time of the record, date unknown.
        """
        death = pd.Series(np.nan, index=self.individuals, dtype=float)
        dated = np.zeros(len(death), dtype=bool)
        if "deceased" in self.covariate_names:
            values = self.data["covariate_deceased"].values
            if np.issubdtype(values.dtype, np.datetime64):  # a 0/1 flag has no date
                when = pd.to_datetime(values)
                ref = pd.to_datetime(self.data["reference_time"].values, errors="coerce")
                death[:] = np.asarray((when - ref) / pd.Timedelta(days=1), dtype=float)
                dated = np.asarray(pd.notna(when))
        if "deceased_flag" in self.covariate_names:
            flag = np.asarray(self.data["covariate_deceased_flag"].values)
            if not np.issubdtype(flag.dtype, np.number):
                warnings.warn(
                    f"covariate 'deceased_flag' is {flag.dtype} ({flag[:3].tolist()}...), not "
                    "0/1 numbers: it is not read as deaths",
                    UserWarning,
                    stacklevel=2,
                )
            else:
                death[(flag == 1) & ~dated] = -np.inf
        return death

    def conform(self, schema: CohortSchema, *, warn: bool = True) -> Cohort:
        """The cohort laid out on ``schema`` (a model's): same modalities, features, levels.

        For instantiating a twin from one individual's own export (a FHIR bundle read
        alone): features are matched by name, or by code and unit when the export named
        them differently; categorical values are recoded by label into the schema's
        levels; features the individual never had are added as unobserved; features
        the schema lacks are dropped.  Observed values are never altered.  What was
        done is kept as JSON in the ``twin_conform_report`` attribute
        (``cohort.attr_json("twin_conform_report")``).

        Parameters
        ----------
        schema
            Target schema, e.g. ``model.schema``.  Covariates are kept as they are.
        warn
            Warn when observed values of the schema's features cannot be used (another
            unit under the same name, a level the schema does not have), naming them.
        """
        from twin.cohort.conform import conform_dataset

        ds, report = conform_dataset(self.data, schema)
        ds = ds.assign_attrs(twin_conform_report=json.dumps(report.to_dict()))
        longitudinal = [m.name for m in schema if m.longitudinal]
        out = Cohort(_trim_visits(ds, longitudinal) if longitudinal else ds)
        problems = report.problems()
        if warn and problems:
            more = f"; ... ({len(problems)} in all)" if len(problems) > 5 else ""
            warnings.warn(
                "conforming the cohort to the schema left observed values out: "
                + "; ".join(problems[:5])
                + more,
                UserWarning,
                stacklevel=2,
            )
        return out

    def with_reference_time(self, reference_time: pd.Series | Mapping[str, object]) -> Cohort:
        """The same cohort with time zero moved to ``reference_time`` (calendar cohorts).

        ``visit_t`` and the interventions' ``start_t``/``end_t`` are shifted so they
        count days since the new reference; calendar dates are unchanged.  Use it to
        put a new export of a patient on the clock of an existing twin (a FHIR bundle
        read alone starts its own clock at its first record).

        Parameters
        ----------
        reference_time
            New time zero by individual id; individuals not listed keep theirs.

        Raises
        ------
        ValueError
            If the cohort has no calendar (numeric times such as a material's age),
            or a given reference time is missing or not a date.
        """
        given = pd.Series(reference_time)
        given.index = given.index.astype(str)
        unknown = given.index.difference(pd.Index(self.individuals.astype(str)))
        if len(unknown):
            raise KeyError(f"individuals not in cohort: {unknown[:5].tolist()}")
        new = pd.to_datetime(given, errors="coerce")
        if new.isna().any():
            bad = given[new.isna()].index[:5].tolist()
            raise ValueError(f"reference times of {bad} are missing or not dates")
        old = self.reference_time
        old.index = old.index.astype(str)
        if old.reindex(new.index).isna().any():
            raise ValueError(
                "the cohort has no calendar (its times are plain numbers), so its "
                "reference time cannot be moved"
            )
        ref = old.copy()
        ref.loc[new.index] = new.to_numpy(dtype="datetime64[ns]")
        shift = ((old - ref) / DAY).to_numpy(dtype=np.float64)  # days added to every time
        ref_ns = ref.to_numpy(dtype="datetime64[ns]")
        ds = self.data.copy()
        ds["reference_time"] = ("individual", ref_ns)
        # times with a date are recomputed from it, as a cohort read with this reference
        # would hold them (adding the shift would differ in the last bits, and the same
        # reading or dose in two exports would no longer match); others are shifted
        if "visit_t" in ds:
            ds["visit_t"] = (
                ("individual", "visit"),
                _days_since(
                    ds["visit_time"].values, ref_ns[:, None], ds["visit_t"].values, shift[:, None]
                ),
            )
        iv_ids = ds["intervention_individual"].values.astype(str)
        if iv_ids.size:
            pos = pd.Index(ref.index).get_indexer(iv_ids)
            for edge in ("start", "end"):
                ds[f"intervention_{edge}_t"] = (
                    "intervention",
                    _days_since(
                        ds[f"intervention_{edge}"].values,
                        ref_ns[pos],
                        ds[f"intervention_{edge}_t"].values,
                        shift[pos],
                    ),
                )
        return Cohort(ds)

    def times(self) -> np.ndarray:
        """Visit times in days since the reference time: (individual, visit), NaN padded."""
        return self.data["visit_t"].values if "visit_t" in self.data else np.zeros((len(self), 0))

    def to_long(self, modality: str) -> pd.DataFrame:
        """Observed entries of a modality as a long table (one row per value)."""
        self._check_modality(modality)
        mask = self.mask(modality)
        vals = self.values(modality)
        idx = np.nonzero(mask)
        feats = self.data[f"{modality}_feature"].values
        out = {"individual": self.individuals[idx[0]]}
        if self._modalities[modality]["longitudinal"]:
            out["t"] = self.data["visit_t"].values[idx[0], idx[1]]
            out["time"] = self.data["visit_time"].values[idx[0], idx[1]]
        out["feature"] = feats[idx[-1]]
        out["value"] = vals[idx]
        return pd.DataFrame(out)

    # ------------------------------------------------------------------ subsetting
    def select(
        self,
        individuals: IndividualSelector = None,
        modalities: Sequence[str] | None = None,
        features: Mapping[str, Sequence[str]] | None = None,
    ) -> Cohort:
        """A cohort restricted to some individuals, modalities and/or features.

        ``individuals`` may be ids, integer positions, a boolean mask or a slice.
        """
        ds = self.data
        if individuals is not None:
            pos = self._positions(individuals)
            ds = ds.isel(individual=pos)
            keep = np.isin(ds["intervention_individual"].values, ds["individual"].values)
            ds = ds.isel(intervention=np.nonzero(keep)[0])
        mods = dict(self._modalities)
        if modalities is not None:
            for m in modalities:
                self._check_modality(m)
            drop = [m for m in mods if m not in modalities]
            for m in drop:
                ds = ds.drop_vars([m, f"{m}_mask"]).drop_dims(f"{m}_feature")
            mods = {m: mods[m] for m in modalities}
        for m, feats in (features or {}).items():
            self._check_modality(m)
            have = set(ds[f"{m}_feature"].values)
            unknown = [f for f in feats if f not in have]
            if unknown:
                raise KeyError(f"modality {m!r} has no features {unknown[:5]}")
            ds = ds.sel({f"{m}_feature": list(feats)})
        ds = ds.assign_attrs(twin_modalities=json.dumps(mods))
        ds = _trim_visits(ds, [m for m, d in mods.items() if d["longitudinal"]])
        return Cohort(ds)

    def _positions(self, individuals: IndividualSelector) -> np.ndarray:
        if isinstance(individuals, slice):
            return np.arange(len(self))[individuals]
        arr = np.asarray(individuals)
        if arr.dtype == bool:
            if arr.shape != (len(self),):
                raise ValueError(f"boolean selector needs shape ({len(self)},), got {arr.shape}")
            return np.nonzero(arr)[0]
        if arr.size and np.issubdtype(arr.dtype, np.integer):
            return arr
        lookup = pd.Index(self.individuals)
        pos = lookup.get_indexer(arr.astype(str))
        if (pos < 0).any():
            missing = arr[pos < 0][:5].tolist()
            raise KeyError(f"individuals not in cohort: {missing}")
        return pos

    def split(self, fractions: Sequence[float] = (0.8, 0.2), seed: int = 0) -> tuple[Cohort, ...]:
        """Split by individual into disjoint cohorts of the given fractions (seeded)."""
        fr = np.asarray(fractions, dtype=float)
        if (fr <= 0).any() or not np.isclose(fr.sum(), 1.0):
            raise ValueError(f"fractions must be positive and sum to 1, got {list(fractions)}")
        perm = np.random.default_rng(seed).permutation(len(self))
        cuts = np.round(np.cumsum(fr)[:-1] * len(self)).astype(int)
        return tuple(self.select(np.sort(p)) for p in np.split(perm, cuts))

    def kfold(self, k: int = 5, seed: int = 0) -> Iterator[tuple[Cohort, Cohort]]:
        """Yield ``(train, test)`` cohorts for k-fold cross-validation by individual."""
        if not 2 <= k <= len(self):
            raise ValueError(f"k must be between 2 and {len(self)}, got {k}")
        perm = np.random.default_rng(seed).permutation(len(self))
        for fold in np.array_split(perm, k):
            test = np.zeros(len(self), dtype=bool)
            test[fold] = True
            yield self.select(~test), self.select(test)

    def hide(
        self,
        modality: str,
        individuals: IndividualSelector = None,
        features: Sequence[str] | None = None,
    ) -> Cohort:
        """A copy with some observed values removed (set to NaN and masked).

        Use it to hold out data, e.g. a whole omics block for held-out individuals.
        """
        self._check_modality(modality)
        ds = self.data.copy(deep=False)
        vals = ds[modality].values.copy()
        mask = ds[f"{modality}_mask"].values.copy()
        rows = np.arange(len(self)) if individuals is None else self._positions(individuals)
        if features is None:
            cols = slice(None)
        else:
            fidx = pd.Index(ds[f"{modality}_feature"].values).get_indexer(list(features))
            if (fidx < 0).any():
                raise KeyError(f"modality {modality!r} has no features {list(features)}")
            cols = fidx
        sel = (rows, Ellipsis, cols) if vals.ndim == 3 else (rows, cols)
        if vals.ndim == 2:
            sel = np.ix_(rows, np.arange(vals.shape[1])[cols])
        vals[sel] = np.nan
        mask[sel] = False
        ds[modality] = (ds[modality].dims, vals)
        ds[f"{modality}_mask"] = (ds[f"{modality}_mask"].dims, mask)
        return Cohort(ds)

    # ------------------------------------------------------------------ combining
    def summarise(
        self,
        modality: str,
        how: str = "last",
        at: float | None = None,
        name: str | None = None,
    ) -> Cohort:
        """Add a static snapshot of a longitudinal modality.

        Parameters
        ----------
        modality
            A longitudinal modality.
        how
            ``"last"``, ``"first"``, ``"mean"``, ``"min"``, ``"max"`` (over observed
            visits) or ``"count"`` (number of observations; a count feature).
        at
            Only use visits with ``visit_t <= at`` (days since reference), e.g. to
            build a patient's state as known at a given time.
        name
            Name of the new static modality (default ``"<modality>_<how>"``).

        Returns
        -------
        Cohort
            A new cohort with the static modality added; individuals without any
            observation of a feature have it masked.
        """
        self._check_modality(modality)
        if not self._modalities[modality]["longitudinal"]:
            raise ValueError(f"modality {modality!r} is static; summarise needs a longitudinal one")
        reducers = ("last", "first", "mean", "min", "max", "count")
        if how not in reducers:
            raise ValueError(f"how must be one of {reducers}, got {how!r}")
        name = name or f"{modality}_{how}"
        if name in self._modalities:
            raise ValueError(f"cohort already has a modality {name!r}")
        vals = self.values(modality)
        mask = self.mask(modality).copy()
        if at is not None:
            mask &= (self.times() <= at)[:, :, None]
        feats = features_from_coords(self.data, modality)
        out = _reduce_visits(vals, mask, how)
        if how in ("mean", "min", "max"):
            bad = [f.name for f in feats if f.type == "categorical"]
            if bad:  # an average of category codes means nothing: use the last level
                idx = [i for i, f in enumerate(feats) if f.type == "categorical"]
                out[:, idx] = _reduce_visits(vals[:, :, idx], mask[:, :, idx], "last")
        if how == "count":
            feats = tuple(
                FeatureSchema(**{**f.to_dict(), "type": "count", "unit": "", "levels": ()})
                for f in feats
            )
        elif how == "mean":
            feats = tuple(
                FeatureSchema(**{**f.to_dict(), "type": "continuous"}) if f.type == "binary" else f
                for f in feats
            )
        ds = self.data.copy(deep=False)
        dim = f"{name}_feature"
        ds = ds.assign_coords({k: v for k, v in feature_coords(name, feats).items()})
        ds[name] = (("individual", dim), out)
        ds[f"{name}_mask"] = (("individual", dim), ~np.isnan(out))
        mods = {**self._modalities, name: {"longitudinal": False}}
        return Cohort(ds.assign_attrs(twin_modalities=json.dumps(mods)))

    def merge(self, other: Cohort) -> Cohort:
        """Combine the modalities of two cohorts over the union of their individuals.

        Modality names must differ.  At most one of the two may hold longitudinal
        modalities.  Covariates present in both are taken from ``self`` where set.
        Interventions of both are kept.
        """
        clash = set(self.modalities) & set(other.modalities)
        if clash:
            raise ValueError(f"both cohorts hold modalities {sorted(clash)}; rename one first")
        if self.longitudinal_modalities and other.longitudinal_modalities:
            raise ValueError(
                "merging two cohorts that both hold longitudinal modalities is not supported"
            )
        ids = pd.Index(self.individuals).union(pd.Index(other.individuals), sort=False)
        ids = np.array(ids, dtype=object)
        first, second = (
            (self, other)
            if self.longitudinal_modalities or not other.longitudinal_modalities
            else (other, self)
        )
        parts = [_reindex_individuals(c.data, ids) for c in (first, second)]
        iv = pd.concat([self.interventions, other.interventions], ignore_index=True)
        parts = [p.drop_dims("intervention", errors="ignore") for p in parts]
        a, b = parts
        if "visit" not in a.dims:
            b_visit = b
        else:
            b_visit = b.drop_vars(["visit_t", "visit_time", "visit_mask"], errors="ignore")
        # covariates and reference time: take the first's where set, else the second's
        merged = xr.merge(
            [
                a,
                b_visit.drop_vars(
                    [v for v in b_visit.data_vars if v in a.data_vars], errors="ignore"
                ),
            ],
            compat="override",
            join="outer",
            combine_attrs="override",
        )
        for v in a.data_vars:
            if v in b_visit.data_vars and merged[v].dims == ("individual",):
                av, bv = merged[v].values, b_visit[v].values
                missing = pd.isna(av) | (av == "") if av.dtype == object else pd.isna(av)
                merged[v] = ("individual", np.where(missing, bv, av))
        ref = merged["reference_time"].values
        iv_vars = intervention_vars(iv, pd.Series(ref, index=ids), pd.Index(ids))
        merged = merged.assign(iv_vars)
        mods = {**first._modalities, **second._modalities}
        mods = {m: mods[m] for m in [*self.modalities, *other.modalities]}
        return Cohort(merged.assign_attrs(twin_modalities=json.dumps(mods)))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the cohort to NetCDF (h5netcdf), atomically; refuse to overwrite by default."""
        with atomic_path(path, overwrite) as tmp:
            self.data.to_netcdf(tmp, engine="h5netcdf")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Cohort:
        """Read a cohort written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no cohort file at {path}")
        if path.is_dir():
            saved_model = (path / "model.json").exists()
            raise ValueError(
                f"{path} is a folder, not a cohort file"
                + (
                    " (it holds a saved model: TwinModel.load / DynamicTwinModel.load)"
                    if saved_model
                    else "; cohorts are single .nc files written by 'twin ingest' or Cohort.save"
                )
            )
        try:
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                data = ds.load()
        except OSError as exc:
            raise ValueError(f"{path}: not a readable NetCDF cohort file ({exc})") from exc
        if "twin_format_version" not in data.attrs:
            dims = ", ".join(f"{k}={v}" for k, v in data.sizes.items())
            raise ValueError(
                f"{path}: a NetCDF file but not a twin cohort (no 'twin_format_version' "
                f"attribute; dimensions {dims or 'none'}); cohorts are written by "
                "'twin ingest' or Cohort.save"
                + (
                    ", and this looks like a 'twin simulate' result"
                    if "scenario" in data.dims
                    else ""
                )
            )
        version = int(data.attrs["twin_format_version"])
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{path}: cohort format version {version}, this twin reads {FORMAT_VERSION}"
            )
        for v in data.data_vars:
            if str(v).endswith("_mask") or v == "visit_mask":
                data[v] = data[v].astype(bool)
        return cls(data)

    def attr_json(self, key: str, default: object = None) -> object:
        """A JSON-valued dataset attribute (e.g. ``"twin_ingest_report"``), decoded."""
        raw = self.data.attrs.get(key)
        return default if raw is None else json.loads(raw)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        lines = [f"<twin.Cohort: {len(self)} individuals>"]
        width = max([len(m) for m in self.modalities] + [8])
        static = self.static_modalities
        if static:
            lines.append("  static modalities:")
            for m in static:
                mask = self.mask(m)
                share = mask.any(axis=1).mean() if len(self) else 0.0
                dens = mask.mean() if mask.size else 0.0
                lines.append(
                    f"    {m:<{width}} {mask.shape[1]:>5} features   observed in "
                    f"{share:6.1%} of individuals, {dens:6.1%} of entries"
                )
        longi = self.longitudinal_modalities
        if longi:
            per = self.data["visit_mask"].values.sum(axis=1)
            lines.append(
                f"  longitudinal modalities: up to {self.n_visits} visits per individual "
                f"(median {int(np.median(per)) if len(per) else 0})" + _time_span(self.data)
            )
            for m in longi:
                mask = self.mask(m)
                lines.append(
                    f"    {m:<{width}} {mask.shape[2]:>5} features   {int(mask.sum()):,} observations"
                )
        n_iv = self.data.sizes.get("intervention", 0)
        if n_iv:
            kinds = pd.Series(self.data["intervention_kind"].values).value_counts()
            agents = len(set(self.data["intervention_agent"].values))
            kind_text = ", ".join(f"{k or 'unspecified'} {v:,}" for k, v in kinds.items())
            lines.append(f"  interventions: {n_iv:,} ({kind_text}) over {agents} agents")
        if self.covariate_names:
            lines.append(f"  covariates: {', '.join(self.covariate_names)}")
        return "\n".join(lines)


def _time_span(ds: xr.Dataset) -> str:
    times = ds["visit_time"].values
    ok = ~np.isnat(times)
    if ok.any():
        lo, hi = times[ok].min(), times[ok].max()
        return f", {np.datetime_as_string(lo, 'D')} to {np.datetime_as_string(hi, 'D')}"
    t = ds["visit_t"].values
    if np.isfinite(t).any():
        return f", t = {np.nanmin(t):g} to {np.nanmax(t):g} days"
    return ""


def _warn_if_disjoint(tables: Mapping[str, pd.DataFrame]) -> None:
    """Warn when two or more static tables share no individual id (ids misread?)."""
    if len(tables) < 2:
        return
    seen: dict[str, int] = {}
    for table in tables.values():
        for i in set(map(str, table.index)):
            seen[i] = seen.get(i, 0) + 1
    if seen and max(seen.values()) == 1:
        examples = {name: [str(i)[:20] for i in t.index[:2]] for name, t in tables.items()}
        warnings.warn(
            f"the tables {list(tables)} share no individual id (first ids: {examples}); "
            "each individual then has one modality only -- check that every table is "
            "indexed by the same ids (pd.read_csv(..., index_col=0))",
            UserWarning,
            stacklevel=3,
        )


def _trim_visits(ds: xr.Dataset, longitudinal: list[str]) -> xr.Dataset:
    """Drop trailing visit slots that no remaining individual uses; recompute visit_mask."""
    if "visit" not in ds.dims:
        return ds
    if longitudinal:
        used = np.zeros(ds["visit_mask"].shape, dtype=bool)
        for m in longitudinal:
            used |= ds[f"{m}_mask"].values.any(axis=-1)
    else:
        used = np.zeros(ds["visit_mask"].shape, dtype=bool)
    ds = ds.assign(visit_mask=(("individual", "visit"), used))
    n_keep = int(used.any(axis=0).nonzero()[0].max() + 1) if used.any() else 0
    return ds.isel(visit=slice(0, n_keep))


def _reduce_visits(vals: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    """Reduce (individual, visit, feature) over observed visits; NaN where none."""
    any_obs = mask.any(axis=1)
    if how == "count":
        return mask.sum(axis=1).astype(np.float64)
    if how in ("last", "first"):
        v = vals.shape[1]
        order = np.arange(v)[None, :, None]
        if how == "last":
            pos = np.where(mask, order, -1).max(axis=1)
        else:
            pos = np.where(mask, order, v).min(axis=1)
        pos = np.clip(pos, 0, max(v - 1, 0))
        picked = (
            np.take_along_axis(vals, pos[:, None, :], axis=1)[:, 0, :]
            if v
            else np.full(any_obs.shape, np.nan)
        )
        return np.where(any_obs, picked, np.nan)
    masked = np.where(mask, vals, np.nan)
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fn = {"mean": np.nanmean, "min": np.nanmin, "max": np.nanmax}[how]
            out = fn(masked, axis=1) if vals.shape[1] else np.full(any_obs.shape, np.nan)
    return np.where(any_obs, out, np.nan)


def _reindex_individuals(ds: xr.Dataset, ids: np.ndarray) -> xr.Dataset:
    """Reindex to ``ids``; new individuals are unobserved (masks False, strings empty)."""
    fill: dict = {}
    for v, da in ds.data_vars.items():
        if "individual" not in da.dims:
            continue
        if da.dtype == bool:
            fill[v] = False
        elif da.dtype == object:
            fill[v] = ""
    out = ds.reindex(individual=ids, fill_value=fill)
    for v, val in fill.items():  # reindex fills with NaN before casting; restore dtypes
        if val is False:
            out[v] = out[v].astype(bool)
    return out


def _days_since(
    dates: np.ndarray, reference: np.ndarray, days: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """Days from ``reference`` to ``dates`` where there is a date, else ``days + shift``."""
    dated = ~np.isnat(dates) & ~np.isnat(reference)
    with np.errstate(invalid="ignore"):
        exact = (dates - reference) / DAY
    return np.where(dated, exact, days + shift).astype(np.float64)
