"""Digital twins of a set of individuals: the posterior of each one's latent state.

A :class:`Twins` object is what :meth:`twin.TwinModel.instantiate` returns.  It keeps,
per individual, the Gaussian posterior of the latent ``z`` as ``(loc, scale_tril)``
tensors, the observations it was conditioned on and a reference to the model.  From
it come the latent summary (:meth:`Twins.latent`), calibrated imputation of every
feature (:meth:`Twins.impute`) and joint posterior predictive draws
(:meth:`Twins.sample`).  Later layers (latent dynamics: forecast, simulate, update)
extend the same state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import xarray as xr

from twin.cohort import CohortSchema
from twin.model.data import ObservedData
from twin.model.predictive import ModalityPredictive, predictive_draws, predictive_summary
from twin.model.threads import seeded

if TYPE_CHECKING:
    from twin.model.twin_model import TwinModel

DEFAULT_QUANTILES = (0.05, 0.5, 0.95)


def check_quantiles(quantiles: Sequence[float]) -> list[float]:
    """Quantile levels as floats; refuse an empty list or a level outside (0, 1)."""
    qs = [float(q) for q in quantiles]
    bad = [q for q in qs if not 0 < q < 1]
    if not qs or bad:
        raise ValueError(f"quantile levels must be in (0, 1), got {list(quantiles)}")
    return qs


def quantile_suffix(q: float) -> str:
    """Variable suffix of a quantile level: 0.05 -> ``"q05"``, 0.5 -> ``"q50"``, 0.025 -> ``"q025"``.

    The digits are the decimals of the level (at least two), so ``int(d) / 10**len(d)``
    recovers it.
    """
    if not 0 < q < 1:
        raise ValueError(f"quantile levels must be in (0, 1), got {q}")
    for n in range(2, 10):
        text = f"{q:.{n}f}"
        if abs(float(text) - q) < 1e-12:
            return "q" + text[2:]
    raise ValueError(f"quantile level {q} has too many decimals")


class Twins:
    """Posterior twins of individuals under a fitted :class:`~twin.TwinModel`.

    Attributes
    ----------
    model
        The population model.
    individuals
        Individual ids, in order.
    loc, scale_tril
        Posterior of ``z``: ``(N, latent_dim)`` mean and ``(N, latent_dim, latent_dim)``
        lower Cholesky factor of the covariance (diagonal for the amortised posterior).
    data
        The observations the posterior is conditioned on (aligned to the model).
    refine_steps
        Refinement steps applied after the amortised posterior (0: none).
    """

    def __init__(
        self,
        model: TwinModel,
        data: ObservedData,
        loc: torch.Tensor,
        scale_tril: torch.Tensor,
        refine_steps: int = 0,
    ):
        if loc.shape[0] != len(data) or scale_tril.shape[0] != len(data):
            raise ValueError("posterior and data must have one row per individual")
        self.model = model
        self.data = data
        self.loc = loc.detach()
        self.scale_tril = scale_tril.detach()
        self.refine_steps = int(refine_steps)

    # ------------------------------------------------------------------ structure
    @property
    def individuals(self) -> np.ndarray:
        return self.data.individuals

    @property
    def latent_dim(self) -> int:
        return int(self.loc.shape[-1])

    @property
    def covariance(self) -> torch.Tensor:
        """Posterior covariance of ``z``, ``(N, d, d)``."""
        return self.scale_tril @ self.scale_tril.transpose(-1, -2)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, individuals: str | int | Sequence | slice | np.ndarray) -> Twins:
        """Twins of a subset of individuals (ids, positions, a slice or a boolean mask)."""
        pos = self._positions(individuals)
        idx = torch.as_tensor(pos, dtype=torch.long, device=self.loc.device)
        return Twins(
            self.model, self.data.take(pos), self.loc[idx], self.scale_tril[idx], self.refine_steps
        )

    def _positions(self, sel: str | int | Sequence | slice | np.ndarray) -> np.ndarray:
        n = len(self)
        if isinstance(sel, slice):
            return np.arange(n)[sel]
        if isinstance(sel, str | int | np.integer):
            sel = [sel]
        arr = np.asarray(sel)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ValueError(f"boolean selector needs shape ({n},), got {arr.shape}")
            return np.nonzero(arr)[0]
        if arr.size and np.issubdtype(arr.dtype, np.integer):
            if (arr >= n).any() or (arr < -n).any():
                raise IndexError(f"positions out of range for {n} twins")
            return arr % n
        lookup = pd.Index(self.individuals.astype(str))
        pos = lookup.get_indexer(arr.astype(str))
        if (pos < 0).any():
            raise KeyError(f"individuals not among the twins: {arr[pos < 0][:5].tolist()}")
        return pos

    # ------------------------------------------------------------------ latent
    def latent(self) -> xr.Dataset:
        """Posterior mean and sd of ``z``: variables ``mean``, ``sd`` (individual, latent)."""
        sd = torch.sqrt((self.scale_tril**2).sum(-1))
        coords = {
            "individual": ("individual", self.individuals),
            "latent": ("latent", np.arange(self.latent_dim)),
        }
        return xr.Dataset(
            {
                "mean": (("individual", "latent"), self.loc.double().cpu().numpy()),
                "sd": (("individual", "latent"), sd.double().cpu().numpy()),
            },
            coords=coords,
            attrs={"refine_steps": self.refine_steps},
        )

    # ------------------------------------------------------------------ imputation
    def impute(
        self,
        n_draws: int = 500,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        seed: int = 0,
    ) -> xr.Dataset:
        """Posterior predictive of every feature of every modality, observed values kept.

        For modality ``m`` the dataset holds, on ``(individual, <m>_feature)``:

        * ``<m>``: predictive mean (observed entries: the observed value),
        * ``<m>_sd``: predictive sd (latent uncertainty and likelihood noise; 0 where
          observed),
        * ``<m>_q05``, ``<m>_q50``, ``<m>_q95`` (one per level of ``quantiles``):
          predictive quantiles from Monte Carlo draws (the observed value where observed),
        * ``<m>_observed``: True where the value was observed (and is returned as is).

        Binary features: ``<m>`` is the probability of 1.  Categorical features: ``<m>``
        is the code of the most probable level (never an "expected code"), sd and
        quantiles are NaN, and ``<m>_proba`` ``(individual, <m>_feature, <m>_level)``
        gives the level probabilities (NaN beyond a feature's levels and for
        non-categorical features; one-hot where observed).  Counts: mean, sd and
        integer quantiles of the predictive.

        Parameters
        ----------
        n_draws
            Latent draws per individual (each with one draw of the data).
        quantiles
            Quantile levels in (0, 1).
        seed
            Seed of the draws (the global torch RNG is left untouched).
        """
        if n_draws < 2:
            raise ValueError("n_draws must be at least 2")
        module = self.model._require_fitted()
        qs = check_quantiles(quantiles)
        with self._seeded(seed):
            summary = predictive_summary(
                module, self.loc, self.scale_tril, self.data.covariates, n_draws, qs
            )
        attrs = {"n_draws": int(n_draws), "seed": int(seed), "refine_steps": self.refine_steps}
        return imputation_dataset(self.model.schema, self.data, summary, qs, attrs)

    def sample(self, n_draws: int = 100, seed: int = 0, keep_observed: bool = True) -> xr.Dataset:
        """Joint posterior predictive draws.

        Returns a dataset with ``z`` ``(draw, individual, latent)`` and, per modality
        ``m``, ``<m>`` ``(draw, individual, <m>_feature)`` (data scale; categorical
        features as level codes) and ``<m>_observed``.  With ``keep_observed`` the
        observed entries hold their observed value in every draw.
        """
        if n_draws < 1:
            raise ValueError("n_draws must be positive")
        module = self.model._require_fitted()
        with self._seeded(seed):
            z, draws = predictive_draws(
                module, self.loc, self.scale_tril, self.data.covariates, n_draws
            )
        return sample_dataset(self.model.schema, self.data, z, draws, keep_observed, seed)

    # ------------------------------------------------------------------ helpers
    def _seeded(self, seed: int) -> contextlib.AbstractContextManager[None]:
        return seeded(seed, self.loc.device, self.model.num_threads)

    def __repr__(self) -> str:
        post = "amortised" if not self.refine_steps else f"refined ({self.refine_steps} steps)"
        lines = [
            f"<twin.Twins: {len(self)} individuals, latent_dim {self.latent_dim}, {post} posterior>"
        ]
        if len(self):
            sd = torch.sqrt((self.scale_tril**2).sum(-1)).mean().item()
            lines.append(f"  mean posterior sd of z: {sd:.3f} (prior 1)")
        width = max(len(m) for m in self.model.modalities)
        for m in self.model.modalities:
            mask = self.data.masks[m]
            share = mask.any(1).float().mean().item() if len(self) else 0.0
            dens = mask.float().mean().item() if mask.numel() else 0.0
            lines.append(
                f"  {m:<{width}} observed in {share:6.1%} of individuals, {dens:6.1%} of entries"
            )
        ids = ", ".join(map(str, self.individuals[:3])) + (", ..." if len(self) > 3 else "")
        lines.append(f"  individuals: {ids}")
        return "\n".join(lines)


def feature_coords(schema: CohortSchema, modality: str) -> dict:
    """Coordinates of ``modality``'s feature axis: names and feature types."""
    mod = schema[modality]
    dim = f"{modality}_feature"
    return {
        dim: (dim, np.array(mod.feature_names, dtype=object)),
        f"{modality}_type": (dim, np.array([f.type for f in mod.features], dtype=object)),
    }


def imputation_dataset(
    schema: CohortSchema,
    data: ObservedData,
    summary: Mapping[str, ModalityPredictive],
    quantiles: Sequence[float],
    attrs: Mapping,
) -> xr.Dataset:
    """The dataset of :meth:`Twins.impute` from a predictive summary (observed values kept)."""
    names = [quantile_suffix(q) for q in quantiles]
    data_vars, coords = {}, {"individual": ("individual", data.individuals)}
    for mod in schema:
        m = mod.name
        dims = ("individual", f"{m}_feature")
        coords.update(feature_coords(schema, m))
        pred = summary[m]
        obs = data.masks[m].cpu().numpy()
        vals = data.exact_values(m)
        data_vars[m] = (dims, np.where(obs, vals, pred.mean))
        data_vars[f"{m}_sd"] = (dims, np.where(obs, 0.0, pred.sd))
        for k, name in enumerate(names):
            data_vars[f"{m}_{name}"] = (dims, np.where(obs, vals, pred.quantiles[k]))
        data_vars[f"{m}_observed"] = (dims, obs)
        if pred.proba is not None:
            n_levels = pred.proba.shape[-1]
            is_cat = np.array([f.type == "categorical" for f in mod.features])
            onehot = vals[..., None] == np.arange(n_levels)
            known = ~np.isnan(pred.proba)
            proba = np.where((obs & is_cat)[..., None], np.where(known, onehot, np.nan), pred.proba)
            data_vars[f"{m}_proba"] = ((*dims, f"{m}_level"), proba)
            coords[f"{m}_level"] = (f"{m}_level", np.arange(n_levels))
    return xr.Dataset(
        data_vars,
        coords=coords,
        attrs={
            "n_draws": attrs["n_draws"],
            "seed": attrs["seed"],
            "quantiles": list(quantiles),
            **{k: v for k, v in attrs.items() if k not in ("n_draws", "seed")},
            "schema_hash": schema.hash(),
        },
    )


def sample_dataset(
    schema: CohortSchema,
    data: ObservedData,
    z: np.ndarray,
    draws: Mapping[str, np.ndarray],
    keep_observed: bool,
    seed: int,
) -> xr.Dataset:
    """The dataset of :meth:`Twins.sample` from latent draws ``z`` and data ``draws``."""
    n_draws, _, latent_dim = z.shape
    coords = {
        "individual": ("individual", data.individuals),
        "latent": ("latent", np.arange(latent_dim)),
        "draw": ("draw", np.arange(n_draws)),
    }
    data_vars = {"z": (("draw", "individual", "latent"), z)}
    for mod in schema:
        m = mod.name
        coords.update(feature_coords(schema, m))
        obs = data.masks[m].cpu().numpy()
        x = draws[m]
        if keep_observed:
            x = np.where(obs, data.exact_values(m), x)
        data_vars[m] = (("draw", "individual", f"{m}_feature"), x)
        data_vars[f"{m}_observed"] = (("individual", f"{m}_feature"), obs)
    return xr.Dataset(data_vars, coords=coords, attrs={"seed": int(seed)})
