"""A deep ensemble of population models: :class:`TwinEnsemble`.

A :class:`~twin.model.twin_model.TwinModel` trained on a few hundred individuals
depends noticeably on its training seed: initialisation and mini-batch order decide
which of many equally good latent spaces it lands in, and its imputations carry that
seed's idiosyncrasies.  An ensemble trains ``n_members`` models from different seeds
on the same data and predicts with the equal-weight mixture of their posterior
predictives (Lakshminarayanan et al. 2017): the mean averages the seeds' errors out
and the spread adds their disagreement to each model's own uncertainty.

The members share one validation split (for early stopping), and their experts are
not tempered (``calibrate=False`` for every member): tempering shrinks a model's
predictions towards the population mean as well as widening them.  Instead the
mixture's intervals are calibrated on the validation individuals after training,
modality by modality: each modality is hidden in turn and predicted from the others,
and the continuous features' intervals (sd and quantiles, about the mean) are scaled
by the split-conformal factor that makes the central ``level`` interval cover that
share of the hidden values (:mod:`twin.model.interval_scale`).  The predictive
means are left as they are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from twin.cohort import Cohort, CohortSchema
from twin.model.data import ObservedData, align_cohort
from twin.model.interval_scale import interval_scale_factor, interval_scores
from twin.model.member_training import MemberJob, fit_members
from twin.model.predictive import PosteriorPart, mixture_predictive_summary, split_draws
from twin.model.threads import seeded
from twin.model.training import TrainingConfig
from twin.model.twin_model import TwinModel

if TYPE_CHECKING:  # the twins layer sits above the model layer
    from twin.ensemble_twins import EnsembleTwins


def member_seed(seed: int, k: int) -> int:
    """Seed of ensemble member ``k`` for ``seed``: ``seed`` itself for the first member (so
    member 0 trains as ``TwinModel.fit(seed=seed)`` would, except that a ``TwinEnsemble``
    switches off the expert temperatures), well apart from the seeds of later runs."""
    return int(seed) + 7919 * int(k)


class TwinEnsemble:
    """An equal-weight ensemble of :class:`~twin.TwinModel` population models.

    Same use as a :class:`~twin.TwinModel`: ``fit``, ``instantiate`` (giving
    :class:`~twin.ensemble_twins.EnsembleTwins` with ``impute``, ``sample`` and
    ``latent``), ``save`` and ``load``.

    Parameters
    ----------
    schema, latent_dim
        As for :class:`~twin.TwinModel`.
    n_members
        Number of models, trained from seeds :func:`member_seed` ``(seed, k)``.
    **model_options
        Other :class:`~twin.TwinModel` arguments (``modalities``, ``specs``,
        ``default_spec``, ``covariates``, ``device``, ``num_threads``), the same for
        every member.

    Attributes
    ----------
    members
        The member models.
    interval_scale
        ``{modality: factor}`` on the predictive sd and interval widths of the
        modality's continuous features (1 where not calibrated).
    calibration
        Per modality: held-out values used (``n``), ``factor``, and the coverage of
        the central ``level`` interval before and after scaling; None before fitting
        or without calibration.

    Examples
    --------
    >>> ens = TwinEnsemble(cohort.schema, latent_dim=16, n_members=5)  # doctest: +SKIP
    >>> ens.fit(cohort, seed=0)                                         # doctest: +SKIP
    >>> ds = ens.instantiate(partial_cohort).impute()                   # doctest: +SKIP
    """

    def __init__(
        self, schema: CohortSchema, latent_dim: int = 16, *, n_members: int = 5, **model_options
    ):
        if isinstance(n_members, bool) or int(n_members) != n_members or n_members < 1:
            raise ValueError(f"n_members must be a positive integer, got {n_members!r}")
        self._options = dict(model_options)
        self.members: list[TwinModel] = [
            TwinModel(schema, latent_dim, **model_options) for _ in range(int(n_members))
        ]
        self.interval_scale: dict[str, float] = {m: 1.0 for m in self.modalities}
        self.calibration: pd.DataFrame | None = None
        self.level: float = 0.9
        #: the ``seed`` of the last :meth:`fit` (None before fitting)
        self.seed: int | None = None

    # ------------------------------------------------------------------ structure
    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def schema(self) -> CohortSchema:
        return self.members[0].schema

    @property
    def modalities(self) -> list[str]:
        return self.members[0].modalities

    @property
    def latent_dim(self) -> int:
        return self.members[0].latent_dim

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    @property
    def num_threads(self) -> int | None:
        return self.members[0].num_threads

    @property
    def is_fitted(self) -> bool:
        return all(m.is_fitted for m in self.members)

    def _require_fitted(self) -> list[TwinModel]:
        if not self.is_fitted:
            raise RuntimeError("the ensemble is not fitted yet; call ensemble.fit(cohort) first")
        return self.members

    def prepare(self, cohort: Cohort) -> ObservedData:
        """The cohort's data aligned to the members' schema (checked; on the device)."""
        return self._require_fitted()[0].prepare(cohort)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        cohort: Cohort,
        *,
        seed: int = 0,
        progress: bool = True,
        config: TrainingConfig | None = None,
        calibrate: bool = True,
        level: float = 0.9,
        n_jobs: int | None = 1,
        **settings,
    ) -> TwinEnsemble:
        """Train every member on ``cohort``, then calibrate the mixture's intervals.

        Parameters
        ----------
        cohort
            Training cohort (any subset of modalities per individual).
        seed
            Member ``k`` trains with seed :func:`member_seed` ``(seed, k)``; all
            members use the validation split drawn with ``seed``.
        progress
            Show each member's progress bar.
        config, **settings
            Training settings for every member, as for :meth:`TwinModel.fit`; the
            members' own expert calibration is switched off (see the module notes).
        calibrate
            Scale each modality's continuous intervals on the validation individuals;
            needs ``validation_fraction > 0``.
        level
            Central interval level the calibration targets.
        n_jobs
            Worker processes training members at the same time on the CPU (``-1``:
            one per core); the members are the same as with 1, the default, which
            trains them in turn (:mod:`twin.model.member_training`).

        Returns
        -------
        TwinEnsemble
            ``self``, fitted; the members are replaced only when all of them trained.
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        config = (config or TrainingConfig()).with_settings(**{**settings, "calibrate": False})
        if calibrate and config.validation_fraction <= 0:
            raise ValueError("calibrate=True needs validation_fraction > 0 (held-out individuals)")
        schema = self.schema
        jobs = [
            MemberJob(
                schema,
                self.latent_dim,
                cohort,
                self._member_options(),
                {"seed": member_seed(seed, k), "split_seed": seed, "config": config},
            )
            for k in range(self.n_members)
        ]
        trained = fit_members(jobs, n_jobs, progress)
        scale = {m: 1.0 for m in self.modalities}
        table = None
        if calibrate:
            first = trained[0]
            data = align_cohort(cohort, first.schema, first.covariate_encoder)
            _, val = first._split(data, config.validation_fraction, seed)
            table = interval_scale_table(trained, val.to(first.device), level, seed=seed)
            scale = table["factor"].to_dict()
        self.members, self.interval_scale, self.calibration = trained, scale, table
        self.level, self.seed = float(level), int(seed)
        return self

    def _member_options(self) -> dict:
        """Constructor options of a member (the schema's covariates as fitted)."""
        return {**self._options, "modalities": self.modalities}

    # ------------------------------------------------------------------ twins
    def instantiate(
        self,
        cohort: Cohort,
        *,
        refine_steps: int = 0,
        refine_lr: float = 0.05,
        covariance: str = "diag",
        seed: int = 0,
    ) -> EnsembleTwins:
        """Twins of every individual in ``cohort`` under every member (batched, amortised).

        Arguments as for :meth:`TwinModel.instantiate`; member ``k`` refines with seed
        :func:`member_seed` ``(seed, k)``.
        """
        from twin.ensemble_twins import EnsembleTwins  # the factory of the API

        members = self._require_fitted()
        data = members[0].prepare(cohort)
        twins = []
        for k, member in enumerate(members):
            loc, tril = member.posterior(
                data, refine_steps, refine_lr, covariance, member_seed(seed, k)
            )
            twins.append((loc, tril))
        return EnsembleTwins(self, data, twins, refine_steps=refine_steps)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the ensemble into the folder ``path``: ``model.json`` (the ensemble's
        metadata) and one saved :class:`TwinModel` per member in ``member_<k>/``."""
        from twin.model.ensemble_persistence import save_ensemble

        return save_ensemble(self, path, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        schema: CohortSchema | None = None,
        device: str | torch.device = "auto",
        num_threads: int | None = 1,
    ) -> TwinEnsemble:
        """Read an ensemble written by :meth:`save` (refusing a mismatched ``schema``
        as :meth:`TwinModel.load` does)."""
        from twin.model.ensemble_persistence import load_ensemble

        return load_ensemble(path, schema=schema, device=device, num_threads=num_threads)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        first = self.members[0]
        state = "fitted" if self.is_fitted else "not fitted"
        lines = [
            f"<twin.TwinEnsemble: {self.n_members} members, latent_dim {self.latent_dim}, "
            f"{state}, device {self.device}>"
        ]
        lines += repr(first).splitlines()[1 : 1 + len(self.modalities)]
        if self.is_fitted:
            secs = sum(m.history.seconds for m in self.members if m.history is not None)
            epochs = [len(m.history.train_loss) for m in self.members if m.history is not None]
            lines.append(f"  trained {self.n_members} members in {secs:.1f} s (epochs {epochs})")
        if self.calibration is not None:
            parts = [
                f"{m} x{r.factor:.2f} (coverage {r.coverage_before:.2f} -> {r.coverage_after:.2f})"
                if r.n
                else f"{m} x1 (no validation value to score)"
                for m, r in self.calibration.iterrows()
            ]
            lines.append(f"  {self.level:.0%} intervals scaled: " + ", ".join(parts))
        return "\n".join(lines)


def continuous_features(schema: CohortSchema, modality: str) -> np.ndarray:
    """Boolean mask of the modality's continuous features (those whose intervals scale)."""
    return np.array([f.type == "continuous" for f in schema[modality].features], dtype=bool)


@torch.no_grad()
def interval_scale_table(
    members: Sequence[TwinModel],
    data: ObservedData,
    level: float = 0.9,
    n_draws: int = 400,
    seed: int = 0,
) -> pd.DataFrame:
    """Per modality, the factor that calibrates the mixture's continuous intervals.

    Each modality in turn is hidden for the individuals of ``data`` that have it and
    at least one other modality, predicted by the members' mixture from the rest, and
    scored with :func:`~twin.model.interval_scale.interval_scores` against its central
    ``level`` interval (quantiles from the pooled draws, centred on the predictive
    mean).  Returns one row per modality: ``n`` (held-out values), ``factor``,
    ``coverage_before`` and ``coverage_after`` (NaN where nothing could be scored).
    """
    schema = members[0].schema
    lo, hi = 0.5 - level / 2, 0.5 + level / 2
    counts = split_draws(n_draws, len(members))
    rows = {}
    device = data.values[schema.names[0]].device
    for name in schema.names:
        hidden = data.masks[name] & torch.as_tensor(continuous_features(schema, name)).to(
            data.masks[name].device
        )
        keep, reduced = data.leave_out(name, scored=hidden)
        scores = np.array([])
        if keep.any():
            with seeded(seed, device, members[0].num_threads):
                parts = [
                    PosteriorPart(member._require_fitted(), *member.posterior(reduced), n)
                    for member, n in zip(members, counts, strict=True)
                ]
                pred = mixture_predictive_summary(parts, reduced.covariates, (lo, hi))[name]
            mask = hidden[keep].cpu().numpy()
            truth = data.exact_values(name)[keep.cpu().numpy()]
            scores = interval_scores(truth, pred.mean, pred.quantiles[0], pred.quantiles[1])[mask]
        factor = interval_scale_factor(scores, level)
        finite = scores[~np.isnan(scores)]
        rows[name] = {
            "n": int(finite.size),
            "factor": factor,
            "coverage_before": float(np.mean(finite <= 1)) if finite.size else np.nan,
            "coverage_after": float(np.mean(finite <= factor)) if finite.size else np.nan,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "modality"
    return table
