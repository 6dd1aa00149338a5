"""A cohort's static modalities as tensors aligned to a model's schema.

:func:`align_cohort` is the one place where a :class:`~twin.Cohort` is checked
against what a model was trained on: modalities the model does not know are ignored,
modalities the cohort lacks are unobserved, features are placed at the model's
positions (absent features are unobserved), and anything that would silently change
the meaning of a value (a feature the model does not know, another type, unit or set
of levels, a longitudinal block under a static name) is refused with a message saying
what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from twin.cohort import Cohort, CohortSchema, ModalitySchema
from twin.model.covariates import CovariateEncoder


@dataclass
class ObservedData:
    """Values, masks and encoded covariates of a set of individuals.

    ``values[m]`` is ``(N, F_m)`` float32 with unobserved entries set to 0 (never read
    without ``masks[m]``), ``masks[m]`` ``(N, F_m)`` bool, ``covariates`` ``(N, C)``.
    ``exact[m]`` keeps the observed values in float64 (NaN where unobserved), so that
    outputs return them bit for bit.
    """

    individuals: np.ndarray
    values: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    covariates: torch.Tensor
    exact: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.individuals)

    def to(self, device: torch.device | str) -> ObservedData:
        return ObservedData(
            self.individuals,
            {m: v.to(device) for m, v in self.values.items()},
            {m: v.to(device) for m, v in self.masks.items()},
            self.covariates.to(device),
            self.exact,
        )

    def take(self, rows: torch.Tensor | np.ndarray) -> ObservedData:
        """The subset of rows (individuals) at integer positions ``rows``."""
        idx = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        dev = self.covariates.device
        idx_dev = idx.to(dev)
        rows_np = idx.numpy()
        return ObservedData(
            self.individuals[rows_np],
            {m: v[idx_dev] for m, v in self.values.items()},
            {m: v[idx_dev] for m, v in self.masks.items()},
            self.covariates[idx_dev],
            {m: v[rows_np] for m, v in self.exact.items()},
        )

    def with_masks(self, masks: dict[str, torch.Tensor]) -> ObservedData:
        """Same values with other masks (used for modality dropout and held-out scoring)."""
        exact = {m: np.where(masks[m].cpu().numpy(), v, np.nan) for m, v in self.exact.items()}
        return ObservedData(self.individuals, self.values, masks, self.covariates, exact)

    def exact_values(self, modality: str) -> np.ndarray:
        """Observed values ``(N, F)`` in float64, NaN where unobserved."""
        if modality in self.exact:
            return self.exact[modality]
        mask = self.masks[modality].cpu().numpy()
        return np.where(mask, self.values[modality].double().cpu().numpy(), np.nan)

    def leave_out(
        self, modality: str, scored: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ObservedData]:
        """Hide ``modality`` to predict it from the others (leave-one-modality-out scoring).

        Returns ``keep``, ``(N,)`` bool: the individuals with an entry of ``scored``
        (default: any observed entry of ``modality``) and at least one other modality
        observed; and those individuals' data with ``modality`` hidden.
        """
        scored = self.masks[modality] if scored is None else scored
        others = [self.present(m) for m in self.masks if m != modality]
        keep = scored.any(1)
        keep = keep & torch.stack(others, 1).any(1) if others else torch.zeros_like(keep)
        part = self.take(torch.nonzero(keep).flatten().cpu().numpy())
        hidden = {m: (torch.zeros_like(k) if m == modality else k) for m, k in part.masks.items()}
        return keep, part.with_masks(hidden)

    def present(self, modality: str) -> torch.Tensor:
        """``(N,)`` bool: whether any feature of ``modality`` is observed."""
        return self.masks[modality].any(dim=-1)


def align_cohort(
    cohort: Cohort,
    schema: CohortSchema,
    covariates: CovariateEncoder,
) -> ObservedData:
    """Tensors of ``cohort`` laid out as ``schema`` (the model's static modalities).

    Raises
    ------
    ValueError
        If a modality of the cohort named like one of the model's is longitudinal, holds
        features the model does not know, or describes a shared feature differently
        (type, unit, levels, terminology).
    KeyError
        If covariates the model uses are missing from the cohort.
    """
    n = len(cohort)
    cohort_schema = cohort.schema
    values: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    exact: dict[str, np.ndarray] = {}
    for mod in schema:
        f = mod.n_features
        v = np.full((n, f), np.nan)
        k = np.zeros((n, f), dtype=bool)
        if mod.name in cohort_schema:
            theirs = cohort_schema[mod.name]
            positions = check_modality(mod, theirs)
            mask = cohort.mask(mod.name)
            k[:, positions] = mask
            v[:, positions] = np.where(mask, cohort.values(mod.name), np.nan)
        values[mod.name] = torch.from_numpy(np.where(k, v, 0.0).astype(np.float32))
        masks[mod.name] = torch.from_numpy(k)
        exact[mod.name] = v
    cov_table = cohort.covariates if covariates.names else pd.DataFrame(index=range(n))
    cov = torch.from_numpy(covariates.transform(cov_table))
    return ObservedData(np.asarray(cohort.individuals, dtype=object), values, masks, cov, exact)


def check_modality(mine: ModalitySchema, theirs: ModalitySchema) -> np.ndarray:
    """Positions of ``theirs``'s features in ``mine``; refuse incompatible descriptions
    (longitudinal vs static, unknown features, another type, unit, levels or code)."""
    if theirs.longitudinal:
        raise ValueError(
            f"modality {mine.name!r} is longitudinal in the cohort but static in the model"
        )
    known = {name: i for i, name in enumerate(mine.feature_names)}
    unknown = [name for name in theirs.feature_names if name not in known]
    if unknown:
        raise ValueError(
            f"modality {mine.name!r}: the cohort has {len(unknown)} feature(s) the model was not "
            f"trained on: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; select the model's "
            "features first (cohort.select(features=...)), or lay the cohort out on them "
            "with cohort.conform(model.schema)"
        )
    shared = theirs.feature_names
    a = CohortSchema((ModalitySchema(mine.name, tuple(mine.feature(x) for x in shared)),))
    b = CohortSchema((ModalitySchema(mine.name, theirs.features),))
    diff = a.diff(b)
    if diff:
        raise ValueError(
            "the cohort describes features differently from the model's schema "
            "(model vs cohort): "
            + "; ".join(diff[:5])
            + "; cohort.conform(model.schema) matches features by code and unit and "
            "recodes categories by label"
        )
    return np.array([known[name] for name in shared], dtype=np.int64)
