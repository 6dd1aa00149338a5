"""Maximum-likelihood training of the latent dynamic model.

The objective is the exact marginal log-likelihood of every individual's observed
sequence (the Kalman filter's ``log_likelihood``; assumed-density filtering for
neural dynamics), plus the log density of the parameter priors (effect priors, the
input-matrix prior: a MAP estimate), divided by the number of observations. It is
maximised with Adam over mini-batches of individuals; a validation split of
individuals (by individual, seeded) stops training when the same objective on the
validation individuals (their likelihood plus the prior at the same relative
weight) has not improved for ``patience`` epochs, and the best parameters are
restored. ``history.val_loss`` records the validation likelihood alone. No sampling is involved
for linear dynamics, so Pyro is not needed here: the latent states are integrated
out exactly.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["DynamicTrainingConfig", "DynamicTrainingHistory", "train_dynamic"]


@dataclass
class DynamicTrainingConfig:
    """Settings of :meth:`DynamicTwinModel.fit`.

    Attributes
    ----------
    epochs : int
        Maximum passes over the training individuals.
    lr : float
        Adam learning rate.
    batch_size : int or None
        Individuals per mini-batch (None: all).
    validation : float
        Share of individuals held out for early stopping (0: none; then the last
        epoch is kept).
    patience : int
        Epochs without validation improvement before stopping.
    seed : int
        Seeds initialisation, the validation split and the batch order.
    """

    epochs: int = 400
    lr: float = 0.03
    batch_size: int | None = None
    validation: float = 0.15
    patience: int = 40
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DynamicTrainingConfig:
        return cls(**d)


@dataclass
class DynamicTrainingHistory:
    """Per-epoch losses (negative log-likelihood per observation) and the kept epoch."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0
    n_train: int = 0
    n_val: int = 0
    stage: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DynamicTrainingHistory:
        return cls(**d)


def train_dynamic(
    module: torch.nn.Module,
    batch_log_lik: Callable[[np.ndarray], tuple[torch.Tensor, int]],
    log_prior: Callable[[], torch.Tensor],
    n_individuals: int,
    config: DynamicTrainingConfig,
    *,
    history: DynamicTrainingHistory | None = None,
    stage: str = "linear",
    epochs: int | None = None,
    progress: bool = True,
    parameters: list[torch.nn.Parameter] | None = None,
) -> DynamicTrainingHistory:
    """Fit ``module`` in place.

    Parameters
    ----------
    batch_log_lik
        ``indices -> (sum of log-likelihoods of those individuals, number of observations)``.
    log_prior
        Log density of the parameter priors (effect priors); 0 if none.
    n_individuals
        Number of training individuals (indices ``0 .. n-1``).
    """
    history = history or DynamicTrainingHistory()
    rng = np.random.default_rng(config.seed)
    perm = rng.permutation(n_individuals)
    n_val = int(round(config.validation * n_individuals)) if config.validation > 0 else 0
    if n_individuals - n_val < 1:
        n_val = 0
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    history.n_train, history.n_val = len(train_idx), len(val_idx)
    params = (
        parameters
        if parameters is not None
        else [p for p in module.parameters() if p.requires_grad]
    )
    opt = torch.optim.Adam(params, lr=config.lr)
    bs = config.batch_size or len(train_idx)
    n_epochs = int(epochs if epochs is not None else config.epochs)
    best, best_state, stale = math.inf, None, 0
    start = time.perf_counter()
    bar = tqdm(range(n_epochs), desc=f"fit ({stage})", disable=not progress, leave=False)
    for epoch in bar:
        order = rng.permutation(train_idx)
        total, count = 0.0, 0
        for i in range(0, len(order), bs):
            idx = np.sort(order[i : i + bs])
            opt.zero_grad()
            ll, n_obs = batch_log_lik(idx)
            share = len(idx) / len(train_idx)
            objective = ll + share * log_prior()
            loss = -objective / max(n_obs, 1)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite training loss at epoch {epoch}; lower the learning rate"
                )
            loss.backward()
            opt.step()
            total += float(-ll.detach())
            count += n_obs
        train_loss = total / max(count, 1)
        history.train_loss.append(train_loss)
        history.stage.append(stage)
        if n_val:
            with torch.no_grad():
                vll, vn = batch_log_lik(val_idx)
                # the objective on the validation individuals: their likelihood and the
                # parameter prior at the same relative weight as in training
                penalty = float(log_prior()) * len(val_idx) / len(train_idx)
            val_loss = float(-vll) / max(vn, 1)
            history.val_loss.append(val_loss)
            monitored = -(float(vll) + penalty) / max(vn, 1)
        else:
            monitored = train_loss
        if monitored < best - 1e-6:
            best, stale = monitored, 0
            best_state = copy.deepcopy(module.state_dict())
            history.best_epoch = len(history.train_loss) - 1
        else:
            stale += 1
        bar.set_postfix(
            train=f"{train_loss:.4f}", val=f"{history.val_loss[-1]:.4f}" if n_val else "-"
        )
        if n_val and stale >= config.patience:
            break
    if best_state is not None and n_val:
        module.load_state_dict(best_state)
    elif not n_val:
        history.best_epoch = len(history.train_loss) - 1
    history.seconds += time.perf_counter() - start
    return history
