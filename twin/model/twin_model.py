"""The user-facing population model: :class:`TwinModel`."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from twin.cohort import Cohort, CohortSchema
from twin.model.calibration import calibrate_temperatures
from twin.model.covariates import CovariateEncoder
from twin.model.data import ObservedData, align_cohort
from twin.model.module import TwinModule
from twin.model.refine import refine_posterior
from twin.model.specs import ModalitySpec
from twin.model.threads import limited_threads, resolve_device, seeded
from twin.model.training import TrainingConfig, TrainingHistory, train

if TYPE_CHECKING:  # the twins layer sits above the model layer
    from twin.twins import Twins


class TwinModel:
    """Population latent-space model of a cohort's static modalities.

    Each individual has a latent ``z ~ N(0, I)``; every modality is generated from
    ``z`` (and optional covariates such as site or batch) by its decoder and
    likelihood.  Each observed modality contributes a Gaussian expert from its
    encoder; the posterior of ``z`` is the product of the prior and the experts of the
    modalities actually observed, with feature-level masks.  Training is stochastic
    variational inference (Pyro) with mini-batches, modality dropout, KL warm-up and
    early stopping on a validation split.

    Parameters
    ----------
    schema
        The cohort schema to model (``cohort.schema``).  Longitudinal modalities are
        ignored.
    latent_dim
        Dimension of ``z``.
    modalities
        Static modalities to model (default: all static modalities of ``schema``).
    specs
        ``{modality: ModalitySpec}`` overriding ``default_spec`` for some modalities.
    default_spec
        Spec of modalities not in ``specs`` (default: ``ModalitySpec()``).
    covariates
        Covariates given to the decoders (e.g. ``["site"]``); strings are one-hot
        encoded, numbers standardised.
    device
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ...
    num_threads
        Torch CPU threads used while this model computes (fit, instantiate, impute);
        the caller's setting is restored afterwards.  The default 1 is fastest for these
        small networks, above all on a busy machine; ``None`` keeps torch's setting.

    Examples
    --------
    >>> model = TwinModel(cohort.schema, latent_dim=16)          # doctest: +SKIP
    >>> model.fit(cohort, seed=0)                                 # doctest: +SKIP
    >>> twins = model.instantiate(partial_cohort)                 # doctest: +SKIP
    >>> ds = twins.impute()                                       # doctest: +SKIP
    """

    def __init__(
        self,
        schema: CohortSchema,
        latent_dim: int = 16,
        *,
        modalities: Sequence[str] | None = None,
        specs: Mapping[str, ModalitySpec] | None = None,
        default_spec: ModalitySpec | None = None,
        covariates: Sequence[str] | None = None,
        device: str | torch.device = "auto",
        num_threads: int | None = 1,
    ):
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        if modalities is None:
            names = [m.name for m in schema if not m.longitudinal]
        else:
            names = list(modalities)
            for m in names:
                if schema[m].longitudinal:  # KeyError names the known modalities
                    raise ValueError(
                        f"modality {m!r} is longitudinal; TwinModel models static modalities"
                    )
        if not names:
            raise ValueError("the schema has no static modality to model")
        if len(set(names)) != len(names):
            raise ValueError(f"modalities listed twice: {names}")
        covariates = tuple(covariates or ())
        if schema.covariates:
            unknown = [c for c in covariates if c not in schema.covariates]
            if unknown:
                raise KeyError(f"covariates {unknown} not in the schema {list(schema.covariates)}")
        specs = dict(specs or {})
        stray = sorted(set(specs) - set(names))
        if stray:
            raise KeyError(f"specs given for modalities the model does not use: {stray}")
        default_spec = default_spec or ModalitySpec()
        self.schema = CohortSchema(tuple(schema[m] for m in names), covariates)
        self.latent_dim = int(latent_dim)
        self.specs: dict[str, ModalitySpec] = {m: specs.get(m, default_spec) for m in names}
        self.device = resolve_device(device)
        self.num_threads = num_threads
        self.covariate_encoder = CovariateEncoder(names=covariates)
        self.module: TwinModule | None = None
        self.training_config: TrainingConfig | None = None
        self.history: TrainingHistory | None = None

    # ------------------------------------------------------------------ structure
    @property
    def modalities(self) -> list[str]:
        return list(self.schema.names)

    @property
    def is_fitted(self) -> bool:
        return self.module is not None

    def _require_fitted(self) -> TwinModule:
        if self.module is None:
            raise RuntimeError("the model is not fitted yet; call model.fit(cohort) first")
        return self.module

    def _build_module(self) -> TwinModule:
        return TwinModule(self.schema, self.specs, self.latent_dim, self.covariate_encoder.width)

    def prepare(self, cohort: Cohort) -> ObservedData:
        """The cohort's data aligned to this model's schema (checked; on the model's device)."""
        return align_cohort(cohort, self.schema, self.covariate_encoder).to(self.device)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        cohort: Cohort,
        *,
        seed: int = 0,
        progress: bool = True,
        config: TrainingConfig | None = None,
        split_seed: int | None = None,
        **settings,
    ) -> TwinModel:
        """Train the model on ``cohort`` by SVI (from scratch on every call).

        Parameters
        ----------
        cohort
            Training cohort; it may hold any subset of the model's modalities per
            individual and extra modalities (ignored).
        seed
            Seeds initialisation, mini-batch order, modality dropout, the validation
            split and the ELBO's Monte Carlo draws: the same seed gives identical
            losses and weights.
        progress
            Show a tqdm progress bar.
        config
            A :class:`TrainingConfig`; keyword ``settings`` override its fields
            (``epochs``, ``batch_size``, ``lr``, ``validation_fraction``,
            ``patience``, ``kl_warmup_epochs``, ``modality_dropout``, ...).
        split_seed
            Seed of the validation split (default: ``seed``); models trained with
            different seeds and one ``split_seed`` share their validation individuals
            (as the members of a :class:`~twin.model.ensemble.TwinEnsemble` do).

        Returns
        -------
        TwinModel
            ``self``, trained; ``self.history`` holds the losses.

        Notes
        -----
        A ``validation_fraction`` of the individuals (drawn with ``split_seed``) is held out
        for early stopping.  After training, the latent is re-standardised so that the
        training individuals' aggregate posterior matches the ``N(0, I)`` prior
        (:meth:`TwinModule.standardise_latent`), and each modality's expert
        temperature is chosen on the validation individuals by how well each modality
        is predicted from the others (:mod:`twin.model.calibration`).
        """
        started = time.perf_counter()
        config = (config or TrainingConfig()).with_settings(**settings)
        have = [m.name for m in cohort.schema]
        absent = [m for m in self.modalities if m not in have]
        if absent:
            raise ValueError(
                f"the training cohort has no modality {absent} of this model (it has {have}); "
                "train on a cohort with every modality of the model (any individual may miss "
                "any of them), or build the model with modalities=[...]"
            )
        self.covariate_encoder = CovariateEncoder.fit(
            cohort.covariates, self.covariate_encoder.names
        )
        data = align_cohort(cohort, self.schema, self.covariate_encoder)
        split = seed if split_seed is None else split_seed
        train_data, val_data = self._split(data, config.validation_fraction, split)
        self._check_trainable(train_data)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._build_module()
        module.fit_statistics(train_data)
        module.to(self.device)
        train_data = train_data.to(self.device)
        val_data = val_data.to(self.device) if val_data is not None else None
        devices = [self.device] if self.device.type == "cuda" else []
        with limited_threads(self.num_threads):
            history = train(module, train_data, val_data, config, seed, progress)
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                module.standardise_latent(train_data)
                if val_data is not None and config.calibrate:
                    _, history.calibration_score = calibrate_temperatures(module, val_data)
        temps = module.expert_temperature.tolist()
        history.expert_temperature = dict(zip(module.names, temps, strict=True))
        history.seconds = time.perf_counter() - started
        self.module, self.training_config, self.history = module, config, history
        return self

    def _split(
        self, data: ObservedData, fraction: float, seed: int
    ) -> tuple[ObservedData, ObservedData | None]:
        """Training and validation individuals (those with no observed entry are dropped)."""
        has_any = torch.stack([data.present(m) for m in self.modalities], 1).any(1).numpy()
        data = data.take(np.nonzero(has_any)[0])
        if len(data) < 2:
            raise ValueError("at least two individuals with observed data are needed to fit")
        perm = np.random.default_rng(seed).permutation(len(data))
        n_val = int(round(fraction * len(data)))
        if fraction > 0 and (n_val < 1 or n_val >= len(data)):
            raise ValueError(
                f"validation_fraction {fraction} leaves no usable split of {len(data)} individuals"
            )
        train_data = data.take(np.sort(perm[n_val:]))
        return train_data, (data.take(np.sort(perm[:n_val])) if n_val else None)

    def _check_trainable(self, data: ObservedData) -> None:
        for m in self.modalities:
            counts = data.masks[m].sum(0)
            never = [
                self.schema[m].features[j].name
                for j in torch.nonzero(counts < 2).flatten().tolist()
            ]
            if never:
                raise ValueError(
                    f"modality {m!r}: features {never[:5]} are observed in fewer than two training "
                    "individuals; drop them (cohort.select(features=...)) or add data"
                )

    # ------------------------------------------------------------------ twins
    def posterior(
        self,
        data: ObservedData,
        refine_steps: int = 0,
        refine_lr: float = 0.05,
        covariance: str = "diag",
        seed: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale_tril)`` of ``q(z | observed)`` for prepared data."""
        module = self._require_fitted()
        module.eval()
        with limited_threads(self.num_threads), torch.no_grad():
            loc, scale = module.posterior(data)
        tril = torch.diag_embed(scale)
        if refine_steps > 0:
            with seeded(seed, self.device, self.num_threads):
                loc, tril = refine_posterior(
                    module, data, loc, tril, refine_steps, refine_lr, covariance=covariance
                )
        return loc, tril

    def instantiate(
        self,
        cohort: Cohort,
        *,
        refine_steps: int = 0,
        refine_lr: float = 0.05,
        covariance: str = "diag",
        seed: int = 0,
    ) -> Twins:
        """Digital twins of every individual in ``cohort`` (batched, amortised).

        Parameters
        ----------
        cohort
            Any subset of the model's modalities and features; absent modalities or
            masked entries are unobserved.  Features the model does not know, or that
            the cohort describes differently (type, unit, levels), are refused.
        refine_steps
            Optional per-individual optimisation of the posterior under the frozen
            decoders (0: the amortised posterior as is).
        refine_lr
            Learning rate of the refinement.
        covariance
            ``"diag"`` or ``"full"`` posterior covariance for the refinement.
        seed
            Seed of the refinement's Monte Carlo draws.
        """
        from twin.twins import Twins  # the one upward reference: the factory of the API

        data = self.prepare(cohort)
        loc, tril = self.posterior(data, refine_steps, refine_lr, covariance, seed)
        return Twins(self, data, loc, tril, refine_steps=refine_steps)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``model.json`` and ``weights.pt`` into the folder ``path`` (atomically).

        No pickle: weights are a plain tensor dictionary (read back with
        ``torch.load(weights_only=True)``), metadata is JSON with the format version
        and the schema hash.
        """
        from twin.model.persistence import save_model

        return save_model(self, path, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        schema: CohortSchema | None = None,
        device: str | torch.device = "auto",
        num_threads: int | None = 1,
    ) -> TwinModel:
        """Read a model written by :meth:`save`.

        ``schema``, if given, must describe the model's modalities exactly as they
        were at training time; otherwise the load is refused naming the differences.
        """
        from twin.model.persistence import load_model

        return load_model(path, schema=schema, device=device, num_threads=num_threads)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        lines = [f"<twin.TwinModel: latent_dim {self.latent_dim}, {state}, device {self.device}>"]
        width = max(len(m) for m in self.modalities)
        for m in self.schema:
            spec = self.specs[m.name]
            types: dict[str, int] = {}
            for f in m.features:
                lik = spec.likelihood(f.type)
                types[lik] = types.get(lik, 0) + 1
            lik_text = ", ".join(f"{k} {v}" for k, v in types.items())
            lines.append(
                f"  {m.name:<{width}} {m.n_features:>5} features  ({lik_text}); "
                f"encoder {spec.encoder}{list(spec.encoder_hidden)}, "
                f"decoder {spec.decoder}{list(spec.decoder_hidden)}"
                + (", non-decreasing means" if spec.increasing else "")
            )
        if self.covariate_encoder.names:
            lines.append(f"  decoder covariates: {', '.join(self.covariate_encoder.names)}")
        if self.history is not None:
            h = self.history
            val = f", validation {h.validation_loss[h.best_epoch]:.4g}" if h.validation_loss else ""
            lines.append(
                f"  trained {len(h.train_loss)} epochs in {h.seconds:.1f} s (best epoch "
                f"{h.best_epoch + 1}{', stopped early' if h.stopped_early else ''}); "
                f"loss {h.train_loss[h.best_epoch]:.4g}{val}"
            )
            temps = ", ".join(f"{m} {t:g}" for m, t in h.expert_temperature.items())
            if temps:
                lines.append(f"  expert temperatures: {temps}")
        return "\n".join(lines)
