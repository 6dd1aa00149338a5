"""Lay a cohort out on another schema: the step between "one patient's export" and a model.

A FHIR bundle read on its own names, types and codes its features from what that one
file holds: a laboratory code seen only in a minority unit is named without the unit
suffix, a categorical feature knows only the levels this patient had, and features the
patient never had are absent.  :func:`conform_dataset` puts such a cohort on the
schema a model was trained with:

* features are matched by name when type and unit agree, else by terminology
  (system, code), type and unit -- so ``33914-3`` in mL/min matches the model's
  ``33914-3[mL/min]``;
* categorical values are recoded by their labels into the schema's levels (a label the
  schema does not know is left unobserved and counted);
* features and modalities of the schema the cohort lacks are added, unobserved;
* features and modalities the schema does not have are dropped (counted when they
  held data).

Observed values are never changed, only moved, recoded or left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from twin.cohort.build import FEATURE_META, feature_coords, features_from_coords
from twin.cohort.schema import CohortSchema, FeatureSchema, ModalitySchema

__all__ = ["ConformReport", "conform_dataset"]


@dataclass
class ConformReport:
    """What :func:`conform_dataset` did; ``str()`` gives one line per kind of change."""

    #: (modality, cohort's name, schema's name) of features matched by code and unit
    renamed: list[tuple[str, str, str]] = field(default_factory=list)
    #: (modality, feature) of the schema with no data in the cohort
    absent: list[tuple[str, str]] = field(default_factory=list)
    #: (modality, feature, number of values) the schema has no place for
    dropped: list[tuple[str, str, int]] = field(default_factory=list)
    #: (modality, feature, label, number of values) of labels not among the schema's levels
    unknown_levels: list[tuple[str, str, str, int]] = field(default_factory=list)
    #: (modality, feature, cohort's unit, schema's unit) of same-named features in another unit
    unit_conflicts: list[tuple[str, str, str, str]] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Observed values of the schema's own features that could not be used: another
        unit under the same name, or a label outside the schema's levels (worth a warning;
        features the schema does not model at all are not problems)."""
        out = [
            f"{m}/{f}: {self._count(m, f)} value(s) in unit {u!r}, the schema's is {v!r}"
            for m, f, u, v in self.unit_conflicts
        ]
        out += [
            f"{m}/{f}: {n} value(s) {label!r} not among the schema's levels"
            for m, f, label, n in self.unknown_levels
        ]
        return out

    def _count(self, modality: str, feature: str) -> int:
        return sum(n for m, f, n in self.dropped if (m, f) == (modality, feature))

    def __str__(self) -> str:
        lines = [f"renamed {a!r} -> {b!r} ({m}, same code and unit)" for m, a, b in self.renamed]
        if self.absent:
            lines.append(f"{len(self.absent)} schema feature(s) absent (left unobserved)")
        if self.dropped:
            n = sum(c for *_, c in self.dropped)
            lines.append(f"{len(self.dropped)} feature(s) not in the schema dropped ({n} values)")
        lines += self.problems()
        return "\n".join(lines) if lines else "nothing to change"

    def to_dict(self) -> dict:
        return {k: [list(x) for x in getattr(self, k)] for k in self.__dataclass_fields__}


def conform_dataset(ds: xr.Dataset, schema: CohortSchema) -> tuple[xr.Dataset, ConformReport]:
    """``ds`` (a cohort's dataset) with exactly the modalities and features of ``schema``.

    Raises
    ------
    ValueError
        If a modality is longitudinal in one and static in the other.
    """
    report = ConformReport()
    modalities = json.loads(ds.attrs.get("twin_modalities", "{}"))
    n = ds.sizes["individual"]
    for name in [m for m in modalities if m not in schema]:
        observed = int(ds[f"{name}_mask"].values.sum())
        if observed:
            report.dropped.append((name, "(whole modality)", observed))
        ds = _drop_modality(ds, name)
    if any(m.longitudinal for m in schema) and "visit" not in ds.dims:
        ds = ds.assign(
            visit_t=(("individual", "visit"), np.zeros((n, 0))),
            visit_time=(("individual", "visit"), np.zeros((n, 0), dtype="datetime64[ns]")),
            visit_mask=(("individual", "visit"), np.zeros((n, 0), dtype=bool)),
        )
    for mod in schema:
        lead = (n, ds.sizes["visit"]) if mod.longitudinal else (n,)
        values = np.full((*lead, mod.n_features), np.nan)
        mask = np.zeros((*lead, mod.n_features), dtype=bool)
        if mod.name in modalities:
            if modalities[mod.name]["longitudinal"] != mod.longitudinal:
                kind = "longitudinal" if mod.longitudinal else "static"
                raise ValueError(
                    f"modality {mod.name!r} is {kind} in the schema but not in the cohort"
                )
            theirs = features_from_coords(ds, mod.name)
            src, src_mask = ds[mod.name].values, ds[f"{mod.name}_mask"].values
            _fill(mod, theirs, src, src_mask, values, mask, report)
            ds = _drop_modality(ds, mod.name)
        else:
            report.absent += [(mod.name, f.name) for f in mod.features]
        dims = ("individual", "visit") if mod.longitudinal else ("individual",)
        dim = f"{mod.name}_feature"
        ds = ds.assign_coords(feature_coords(mod.name, mod.features))
        ds = ds.assign({mod.name: ((*dims, dim), values), f"{mod.name}_mask": ((*dims, dim), mask)})
        modalities[mod.name] = {"longitudinal": mod.longitudinal}
    order = {m.name: modalities[m.name] for m in schema}
    return ds.assign_attrs(twin_modalities=json.dumps(order)), report


def _fill(
    mod: ModalitySchema,
    theirs: tuple[FeatureSchema, ...],
    src: np.ndarray,
    src_mask: np.ndarray,
    values: np.ndarray,
    mask: np.ndarray,
    report: ConformReport,
) -> None:
    """Copy the cohort's features into the schema's positions and report what did not fit."""
    by_name = {f.name: k for k, f in enumerate(theirs)}
    source: dict[int, int] = {}  # schema position -> cohort position
    for j, want in enumerate(mod.features):  # same name, same quantity
        k = by_name.get(want.name)
        if k is not None and _same_quantity(want, theirs[k]):
            source[j] = k
    for j, want in enumerate(mod.features):  # else one feature of the same code and unit
        if j in source or not want.code:
            continue
        taken = set(source.values())
        alike = [
            k
            for k, f in enumerate(theirs)
            if k not in taken
            and (f.code, f.system) == (want.code, want.system)
            and _same_quantity(want, f)
        ]
        if len(alike) == 1:
            source[j] = alike[0]
            report.renamed.append((mod.name, theirs[alike[0]].name, want.name))
    for j, want in enumerate(mod.features):
        k = source.get(j)
        if k is None:
            report.absent.append((mod.name, want.name))
            continue
        col, ok = src[..., k], src_mask[..., k] & ~np.isnan(src[..., k])
        if want.type == "categorical":
            col, ok = _recode(mod.name, want, theirs[k], col, ok, report)
        values[..., j] = np.where(ok, col, np.nan)
        mask[..., j] = ok
    used = set(source.values())
    names = set(mod.feature_names)
    for k, feat in enumerate(theirs):
        count = int(src_mask[..., k].sum())
        if k in used or not count:
            continue
        if feat.name in names:
            have = mod.feature(feat.name)
            report.unit_conflicts.append((mod.name, feat.name, feat.unit, have.unit))
        report.dropped.append((mod.name, feat.name, count))


def _same_quantity(a: FeatureSchema, b: FeatureSchema) -> bool:
    """Same type and unit, and no conflicting terminology."""
    if a.type != b.type or a.unit != b.unit:
        return False
    return not (a.code and b.code and (a.code, a.system) != (b.code, b.system))


def _recode(
    modality: str,
    want: FeatureSchema,
    have: FeatureSchema,
    codes: np.ndarray,
    ok: np.ndarray,
    report: ConformReport,
) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes into ``have.levels`` as codes into ``want.levels`` (by label)."""
    target = {label: i for i, label in enumerate(want.levels)}
    lookup = np.array([target.get(label, -1) for label in have.levels] or [-1], dtype=float)
    idx = np.where(ok, codes, 0).astype(np.int64)
    new = lookup[np.clip(idx, 0, len(lookup) - 1)]
    unknown = ok & (new < 0)
    for code in np.unique(idx[unknown]):
        label = have.levels[code] if code < len(have.levels) else str(code)
        report.unknown_levels.append(
            (modality, want.name, label, int((idx[unknown] == code).sum()))
        )
    return new, ok & ~unknown


def _drop_modality(ds: xr.Dataset, name: str) -> xr.Dataset:
    dim = f"{name}_feature"
    names = [name, f"{name}_mask", *(f"{name}_{k}" for k in FEATURE_META)]
    return ds.drop_vars([v for v in names if v in ds.variables]).drop_dims(dim, errors="ignore")
