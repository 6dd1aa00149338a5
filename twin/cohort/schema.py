"""Schema of a cohort: which modalities exist, their features, types and units.

The schema is what a population model is trained against.  It is serialisable to
canonical JSON and has a stable hash, so a saved model can refuse a cohort whose
schema differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

FEATURE_TYPES = ("continuous", "binary", "categorical", "count")


@dataclass(frozen=True)
class FeatureSchema:
    """One feature of a modality.

    Parameters
    ----------
    name
        Unique name within its modality (e.g. ``"loinc:4548-4"`` or ``"TP53"``).
    type
        One of ``"continuous"``, ``"binary"``, ``"categorical"``, ``"count"``.
    unit
        Unit of the stored values (UCUM where known), ``""`` if dimensionless/unknown.
    system, code, display
        Terminology of the feature (e.g. ``http://loinc.org``, ``4548-4``, ``"Hemoglobin A1c"``).
    levels
        Category labels for categorical features; stored values are integer codes into it.
    """

    name: str
    type: str = "continuous"
    unit: str = ""
    system: str = ""
    code: str = ""
    display: str = ""
    levels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in FEATURE_TYPES:
            raise ValueError(
                f"feature {self.name!r}: type must be one of {FEATURE_TYPES}, got {self.type!r}"
            )
        if self.type == "categorical" and len(self.levels) < 2:
            raise ValueError(f"categorical feature {self.name!r} needs at least two levels")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "unit": self.unit,
            "system": self.system,
            "code": self.code,
            "display": self.display,
            "levels": list(self.levels),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> FeatureSchema:
        return cls(**{**d, "levels": tuple(d.get("levels", ()))})


@dataclass(frozen=True)
class ModalitySchema:
    """A block of features observed together (e.g. mRNA, vital signs, mix design).

    ``longitudinal`` modalities live on the cohort's per-individual visit axis;
    static ones have one value per individual and feature.
    """

    name: str
    features: tuple[FeatureSchema, ...]
    longitudinal: bool = False

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def n_features(self) -> int:
        return len(self.features)

    def feature(self, name: str) -> FeatureSchema:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"modality {self.name!r} has no feature {name!r}")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "longitudinal": self.longitudinal,
            "features": [f.to_dict() for f in self.features],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> ModalitySchema:
        return cls(
            name=d["name"],
            longitudinal=bool(d.get("longitudinal", False)),
            features=tuple(FeatureSchema.from_dict(f) for f in d["features"]),
        )


@dataclass(frozen=True)
class CohortSchema:
    """The modalities and covariates of a cohort, in a fixed order."""

    modalities: tuple[ModalitySchema, ...]
    covariates: tuple[str, ...] = field(default=())

    def __getitem__(self, name: str) -> ModalitySchema:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(f"schema has no modality {name!r}; modalities: {self.names}")

    def __contains__(self, name: object) -> bool:
        return any(m.name == name for m in self.modalities)

    def __iter__(self) -> Iterator[ModalitySchema]:
        return iter(self.modalities)

    def __len__(self) -> int:
        return len(self.modalities)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def subset(self, names: Sequence[str]) -> CohortSchema:
        """Schema restricted to the given modalities (in the given order)."""
        return CohortSchema(tuple(self[n] for n in names), self.covariates)

    def to_dict(self) -> dict:
        return {
            "modalities": [m.to_dict() for m in self.modalities],
            "covariates": list(self.covariates),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> CohortSchema:
        return cls(
            modalities=tuple(ModalitySchema.from_dict(m) for m in d["modalities"]),
            covariates=tuple(d.get("covariates", ())),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CohortSchema:
        return cls.from_dict(json.loads(text))

    def hash(self) -> str:
        """SHA-256 of the canonical JSON form (first 16 hex digits)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def diff(self, other: CohortSchema) -> list[str]:
        """Human-readable differences between two schemas (empty if equal)."""
        out: list[str] = []
        mine, theirs = set(self.names), set(other.names)
        out += [f"modality {n!r} only in the first schema" for n in sorted(mine - theirs)]
        out += [f"modality {n!r} only in the second schema" for n in sorted(theirs - mine)]
        for n in sorted(mine & theirs):
            a, b = self[n], other[n]
            if a.longitudinal != b.longitudinal:
                out.append(f"modality {n!r}: longitudinal {a.longitudinal} vs {b.longitudinal}")
            if a.feature_names != b.feature_names:
                only_a = sorted(set(a.feature_names) - set(b.feature_names))
                only_b = sorted(set(b.feature_names) - set(a.feature_names))
                out.append(
                    f"modality {n!r}: features differ (first only: {only_a[:5]}, "
                    f"second only: {only_b[:5]}"
                    + (", same set in another order" if not only_a and not only_b else "")
                    + ")"
                )
            else:
                for fa, fb in zip(a.features, b.features, strict=True):
                    if fa != fb:
                        out.append(f"modality {n!r} feature {fa.name!r}: {fa} vs {fb}")
        if self.covariates != other.covariates:
            out.append(f"covariates {list(self.covariates)} vs {list(other.covariates)}")
        return out
