"""Stochastic variational inference for :class:`TwinModule`: mini-batches, modality
dropout, KL warm-up and early stopping on a validation split."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pyro
import torch
from pyro.infer import TraceMeanField_ELBO
from tqdm.auto import tqdm

from twin.model.data import ObservedData
from twin.model.module import TwinModule
from twin.model.pyro_model import TrainingBatch, TwinPyroModel
from twin.nn.layers import weight_sampling


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of :func:`train`.

    Parameters
    ----------
    epochs
        Maximum number of passes over the training individuals.
    batch_size
        Individuals per mini-batch.
    lr, weight_decay
        Adam(W) learning rate and decoupled weight decay.
    validation_fraction
        Share of individuals held out (by individual) for early stopping; 0 trains for
        ``epochs`` without validation.
    patience
        Epochs without improvement of the validation loss before stopping.
    kl_warmup_epochs
        The KL term's weight rises linearly from 0 to 1 over these epochs, at most
        half of ``epochs`` (so that a short training still ends on the full ELBO,
        and early stopping and the best-epoch choice compare full-ELBO losses).
    modality_dropout
        Probability of dropping each observed modality in the subset copy of every
        batch (at least one modality is kept).
    subset_weight
        Weight of the subset copy's ELBO relative to the full one.
    subset_objective
        ``"marginal"``: the subset copy scores the modalities it encodes (trains
        ``q(z | subset)`` towards the model's ``p(z | subset)``, which keeps imputation
        intervals calibrated); ``"joint"``: it scores everything observed
        (cross-reconstruction).
    calibrate
        After training, choose the experts' temperature on the validation individuals
        (:mod:`twin.model.calibration`); needs ``validation_fraction > 0``.
    clip_norm
        Gradient norm clipping.
    """

    epochs: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    validation_fraction: float = 0.1
    patience: int = 40
    kl_warmup_epochs: int = 50
    modality_dropout: float = 0.5
    subset_weight: float = 1.0
    subset_objective: str = "marginal"
    calibrate: bool = True
    clip_norm: float = 10.0

    def __post_init__(self) -> None:
        if self.subset_objective not in ("marginal", "joint"):
            raise ValueError("subset_objective must be 'marginal' or 'joint'")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1)")
        if not 0 <= self.modality_dropout < 1:
            raise ValueError("modality_dropout must be in [0, 1)")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainingConfig:
        return cls(**dict(d))

    def with_settings(self, **settings) -> TrainingConfig:
        """A copy with ``settings`` overriding fields; an unknown name is a ``TypeError``."""
        base = self.to_dict()
        unknown = sorted(set(settings) - set(base))
        if unknown:
            raise TypeError(f"unknown training settings {unknown}; known: {sorted(base)}")
        return TrainingConfig.from_dict({**base, **settings})


@dataclass
class TrainingHistory:
    """Per-epoch losses (negative ELBO per individual), where training stopped, and the
    calibrated expert temperature of each modality with its validation score (mean
    leave-one-modality-out predictive log-likelihood per entry)."""

    train_loss: list[float]
    validation_loss: list[float]
    kl_weight: list[float]
    best_epoch: int
    stopped_early: bool
    seconds: float
    expert_temperature: dict[str, float] = field(default_factory=dict)
    calibration_score: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainingHistory:
        return cls(**dict(d))


def kl_weight_at(epoch: int, warmup_epochs: int) -> float:
    """Linear KL warm-up: ``min(1, (epoch + 1) / warmup_epochs)``."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, (epoch + 1) / warmup_epochs)


def drop_modalities(
    data: ObservedData, rate: float, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Masks with each observed modality dropped with probability ``rate`` per individual.

    At least one observed modality is kept for every individual that has one.
    """
    names = list(data.masks)
    present = torch.stack([data.present(m) for m in names], dim=1)  # (B, M)
    u = torch.rand(present.shape, generator=generator).to(present.device)
    keep = (u >= rate) & present
    none_kept = ~keep.any(dim=1) & present.any(dim=1)
    # keep one observed modality, chosen at random, where all were dropped
    pick = torch.where(present, u, torch.full_like(u, -1.0)).argmax(dim=1)
    rescue = torch.nn.functional.one_hot(pick, len(names)).bool() & none_kept[:, None]
    keep = keep | rescue
    return {m: data.masks[m] & keep[:, j : j + 1] for j, m in enumerate(names)}


def make_batch(
    data: ObservedData, config: TrainingConfig, generator: torch.Generator
) -> TrainingBatch:
    """The full copy of a mini-batch and, with modality dropout, its subset copy."""
    n = len(data)
    full_w = torch.full((n,), 1.0 / n, device=data.covariates.device)
    if config.modality_dropout <= 0 or config.subset_weight <= 0 or len(data.masks) < 2:
        return TrainingBatch(data, data.masks, full_w)
    dropped = drop_modalities(data, config.modality_dropout, generator)
    both = ObservedData(
        np.concatenate([data.individuals, data.individuals]),
        {m: torch.cat([v, v]) for m, v in data.values.items()},
        {m: torch.cat([data.masks[m], dropped[m]]) for m in data.masks},
        torch.cat([data.covariates, data.covariates]),
        {},
    )
    scored = dropped if config.subset_objective == "marginal" else data.masks
    scored_masks = {m: torch.cat([data.masks[m], scored[m]]) for m in data.masks}
    weights = torch.cat([full_w, full_w * config.subset_weight])
    return TrainingBatch(both, scored_masks, weights)


def evaluate_loss(pyro_model: TwinPyroModel, data: ObservedData, batch_size: int) -> float:
    """Negative ELBO per individual (KL weight 1, no dropout), in eval mode."""
    elbo = TraceMeanField_ELBO()
    total = 0.0
    module = pyro_model.module
    was_training = module.training
    module.eval()
    with torch.no_grad(), weight_sampling(module, False):
        for start in range(0, len(data), batch_size):
            part = data.take(np.arange(start, min(start + batch_size, len(data))))
            w = torch.ones(len(part), device=part.covariates.device)
            total += float(
                elbo.loss(
                    pyro_model.model, pyro_model.guide, TrainingBatch(part, part.masks, w), 1.0
                )
            )
    module.train(was_training)
    return total / max(len(data), 1)


class EarlyStopping:
    """Track the best validation loss (at full KL weight) and count epochs without gain."""

    def __init__(self, patience: int, min_delta: float = 1e-4):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_epoch, self.waited = math.inf, -1, 0
        self.best_state: dict | None = None

    def update(self, epoch: int, loss: float, module: torch.nn.Module) -> None:
        if loss < self.best - self.min_delta * abs(self.best if math.isfinite(self.best) else 0):
            self.best, self.best_epoch, self.waited = loss, epoch, 0
            self.best_state = copy.deepcopy(module.state_dict())
        else:
            self.waited += 1

    @property
    def should_stop(self) -> bool:
        return self.waited >= self.patience


def train_epoch(
    pyro_model: TwinPyroModel,
    optimizer: torch.optim.Optimizer,
    data: ObservedData,
    config: TrainingConfig,
    kl_weight: float,
    generator: torch.Generator,
) -> float:
    """One pass over ``data`` in shuffled mini-batches; the mean loss per individual.

    The loss of a mini-batch is Pyro's negative ELBO (mean-field, analytic KL) of its
    full and subset copies, plus the KL divergence of the Bayesian decoder weights
    spread over the training individuals (both KL terms scaled by ``kl_weight``).
    """
    module = pyro_model.module
    module.train()
    elbo = TraceMeanField_ELBO()
    n = len(data)
    n_batches = max(1, math.ceil(n / config.batch_size))
    order = torch.randperm(n, generator=generator)
    total = 0.0
    for k in range(n_batches):
        rows = order[k * n // n_batches : (k + 1) * n // n_batches]
        batch = make_batch(data.take(rows), config, generator)
        optimizer.zero_grad(set_to_none=True)
        loss = elbo.differentiable_loss(pyro_model.model, pyro_model.guide, batch, kl_weight)
        weights_kl = sum(block.decoder.kl() for block in module.blocks)
        loss = loss + kl_weight * weights_kl / n
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), config.clip_norm)
        optimizer.step()
        total += float(loss.detach()) * len(rows)
    return total / n


def train(
    module: TwinModule,
    train_data: ObservedData,
    validation_data: ObservedData | None,
    config: TrainingConfig,
    seed: int,
    progress: bool = True,
) -> TrainingHistory:
    """Fit ``module`` by SVI; restores the weights of the best validation epoch.

    Stochastic variational inference with Pyro's ``TraceMeanField_ELBO`` on the model
    and guide of :class:`TwinPyroModel` and a torch AdamW optimiser over the module's
    parameters (no global Pyro parameter store, so several models can train in one
    process).  Runs inside a forked torch RNG seeded with ``seed`` (the caller's global
    RNG state is left untouched); the same seed, data and config give identical
    losses.
    """
    start_time = time.perf_counter()
    device = train_data.covariates.device
    devices = [device] if device.type == "cuda" else []
    with (
        torch.random.fork_rng(devices=devices),
        pyro.validation_enabled(False),
        weight_sampling(module, True),
    ):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        pyro_model = TwinPyroModel(module)
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        history = TrainingHistory([], [], [], best_epoch=-1, stopped_early=False, seconds=0.0)
        stopper = EarlyStopping(config.patience)
        bar = tqdm(range(config.epochs), desc="fit", disable=not progress, leave=False)
        warmup = min(config.kl_warmup_epochs, config.epochs // 2)
        for epoch in bar:
            beta = kl_weight_at(epoch, warmup)
            loss = train_epoch(pyro_model, optimizer, train_data, config, beta, generator)
            history.train_loss.append(loss)
            history.kl_weight.append(beta)
            if validation_data is None or not len(validation_data):
                bar.set_postfix(loss=f"{loss:.4g}")
                history.best_epoch = epoch
                continue
            val = evaluate_loss(pyro_model, validation_data, max(config.batch_size, 256))
            history.validation_loss.append(val)
            bar.set_postfix(loss=f"{loss:.4g}", val=f"{val:.4g}")
            if epoch + 1 >= warmup:  # compare at full KL weight only
                stopper.update(epoch, val, module)
                history.best_epoch = stopper.best_epoch
                if stopper.should_stop:
                    history.stopped_early = True
                    break
        bar.close()
        if stopper.best_state is not None:
            module.load_state_dict(stopper.best_state)
        module.eval()
    history.seconds = time.perf_counter() - start_time
    return history
