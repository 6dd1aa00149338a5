"""Digital twins under an ensemble of population models: :class:`EnsembleTwins`.

What :meth:`twin.model.ensemble.TwinEnsemble.instantiate` returns.  Each individual
has one Gaussian posterior of ``z`` per member (in that member's own latent space);
imputation and draws come from the equal-weight mixture of the members' posterior
predictives, with the ensemble's calibrated interval scale applied to continuous
features.  The datasets have the layout of :class:`twin.twins.Twins`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import xarray as xr

from twin.model.data import ObservedData
from twin.model.ensemble import continuous_features
from twin.model.predictive import (
    ModalityPredictive,
    PosteriorPart,
    mixture_predictive_draws,
    mixture_predictive_summary,
    split_draws,
)
from twin.model.threads import seeded
from twin.twins import (
    DEFAULT_QUANTILES,
    Twins,
    check_quantiles,
    imputation_dataset,
    sample_dataset,
)

if TYPE_CHECKING:
    from twin.model.ensemble import TwinEnsemble


class EnsembleTwins:
    """Posterior twins of individuals under a fitted :class:`~twin.model.ensemble.TwinEnsemble`.

    Attributes
    ----------
    ensemble
        The population ensemble.
    data
        The observations the posteriors are conditioned on.
    posteriors
        Per member, ``(loc, scale_tril)`` of ``z`` (``(N, d)``, ``(N, d, d)``).
    refine_steps
        Refinement steps applied after the amortised posteriors (0: none).
    """

    def __init__(
        self,
        ensemble: TwinEnsemble,
        data: ObservedData,
        posteriors: Sequence[tuple[torch.Tensor, torch.Tensor]],
        refine_steps: int = 0,
    ):
        if len(posteriors) != ensemble.n_members:
            raise ValueError(
                f"{len(posteriors)} posteriors for an ensemble of {ensemble.n_members} members"
            )
        for loc, tril in posteriors:
            if loc.shape[0] != len(data) or tril.shape[0] != len(data):
                raise ValueError("posteriors and data must have one row per individual")
        self.ensemble = ensemble
        self.data = data
        self.posteriors = [(loc.detach(), tril.detach()) for loc, tril in posteriors]
        self.refine_steps = int(refine_steps)

    # ------------------------------------------------------------------ structure
    @property
    def individuals(self) -> np.ndarray:
        return self.data.individuals

    def __len__(self) -> int:
        return len(self.data)

    def member(self, k: int) -> Twins:
        """The twins under member ``k`` alone (a :class:`~twin.twins.Twins`)."""
        loc, tril = self.posteriors[k]
        return Twins(self.ensemble.members[k], self.data, loc, tril, self.refine_steps)

    def __getitem__(self, individuals: str | int | Sequence | slice | np.ndarray) -> EnsembleTwins:
        """Twins of a subset of individuals (ids, positions, a slice or a boolean mask)."""
        pos = self.member(0)._positions(individuals)
        idx = torch.as_tensor(pos, dtype=torch.long, device=self.posteriors[0][0].device)
        posts = [(loc[idx], tril[idx]) for loc, tril in self.posteriors]
        return EnsembleTwins(self.ensemble, self.data.take(pos), posts, self.refine_steps)

    # ------------------------------------------------------------------ latent
    def latent(self) -> xr.Dataset:
        """Posterior mean and sd of ``z`` per member: ``mean``, ``sd`` (member,
        individual, latent).  Members' latent spaces differ: compare within a member."""
        parts = [self.member(k).latent() for k in range(self.ensemble.n_members)]
        ds = xr.concat(parts, dim="member", join="exact")
        return ds.assign_coords(member=np.arange(self.ensemble.n_members))

    # ------------------------------------------------------------------ imputation
    def impute(
        self,
        n_draws: int = 500,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        seed: int = 0,
        calibrated: bool = True,
    ) -> xr.Dataset:
        """Mixture posterior predictive of every feature, observed values kept.

        The layout of :meth:`twin.twins.Twins.impute`.  ``n_draws`` are shared over
        the members as evenly as possible (:func:`~twin.model.predictive.split_draws`),
        and each member weighs in with its share of the draws: equal weights when
        ``n_draws`` is a multiple of the number of members.  With ``calibrated`` the sd
        and the quantiles (about the mean) of each continuous feature are scaled by its
        modality's :attr:`~twin.model.ensemble.TwinEnsemble.interval_scale`.
        """
        if n_draws < 2:
            raise ValueError("n_draws must be at least 2")
        qs = check_quantiles(quantiles)
        with self._seeded(seed):
            summary = mixture_predictive_summary(self._parts(n_draws), self.data.covariates, qs)
        if calibrated:
            summary = {m: self._scaled(m, p) for m, p in summary.items()}
        attrs = {
            "n_draws": int(n_draws),
            "seed": int(seed),
            "refine_steps": self.refine_steps,
            "n_members": self.ensemble.n_members,
            "calibrated": int(calibrated),
        }
        return imputation_dataset(self.ensemble.schema, self.data, summary, qs, attrs)

    def sample(
        self,
        n_draws: int = 100,
        seed: int = 0,
        keep_observed: bool = True,
        calibrated: bool = True,
    ) -> xr.Dataset:
        """Joint draws from the mixture: the layout of :meth:`twin.twins.Twins.sample`
        with a ``member`` coordinate on ``draw`` (draws of member ``k`` follow those of
        member ``k - 1``; ``z`` is in that member's latent space).  With ``calibrated``
        each continuous feature's draws are spread about their mean by its modality's
        interval scale (needs ``n_draws >= 2``)."""
        if n_draws < self.ensemble.n_members:
            raise ValueError(f"n_draws must be at least n_members ({self.ensemble.n_members})")
        parts = self._parts(n_draws)
        with self._seeded(seed):
            z, draws = mixture_predictive_draws(parts, self.data.covariates)
        if calibrated and n_draws >= 2:
            for m, x in draws.items():
                factor = self.ensemble.interval_scale.get(m, 1.0)
                cont = continuous_features(self.ensemble.schema, m)
                centre = x.mean(0, keepdims=True)
                x[..., cont] = centre[..., cont] + factor * (x[..., cont] - centre[..., cont])
        ds = sample_dataset(self.ensemble.schema, self.data, z, draws, keep_observed, seed)
        member = np.repeat(np.arange(len(parts)), [p.n_draws for p in parts])
        return ds.assign_coords(member=("draw", member))

    # ------------------------------------------------------------------ helpers
    def _parts(self, n_draws: int) -> list[PosteriorPart]:
        members = self.ensemble._require_fitted()
        counts = split_draws(n_draws, len(members))
        return [
            PosteriorPart(member._require_fitted(), loc, tril, n)
            for member, (loc, tril), n in zip(members, self.posteriors, counts, strict=True)
        ]

    def _scaled(self, modality: str, pred: ModalityPredictive) -> ModalityPredictive:
        factor = self.ensemble.interval_scale.get(modality, 1.0)
        cont = continuous_features(self.ensemble.schema, modality)
        if factor == 1.0 or not cont.any():
            return pred
        sd = pred.sd.copy()
        sd[:, cont] *= factor
        qs = pred.quantiles.copy()
        centre = pred.mean[None, :, cont]
        qs[:, :, cont] = centre + factor * (qs[:, :, cont] - centre)
        return ModalityPredictive(pred.mean, sd, qs, pred.proba)

    def _seeded(self, seed: int):
        return seeded(seed, self.posteriors[0][0].device, self.ensemble.num_threads)

    def __repr__(self) -> str:
        post = "amortised" if not self.refine_steps else f"refined ({self.refine_steps} steps)"
        lines = [
            f"<twin.EnsembleTwins: {len(self)} individuals, {self.ensemble.n_members} members, "
            f"latent_dim {self.ensemble.latent_dim}, {post} posteriors>"
        ]
        own = repr(self.member(0)).splitlines()[1:]
        lines += [line for line in own if "posterior sd of z" not in line]
        return "\n".join(lines)
