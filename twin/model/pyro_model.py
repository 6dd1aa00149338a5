"""The Pyro model and guide of the population latent-space model.

``model``: ``z_i ~ N(0, I)``; every *scored* entry ``x_ij ~ p(x_ij | decoder_m(z_i, c_i))``
(a masked distribution: unscored entries contribute nothing).
``guide``: ``z_i ~ N(loc_i, diag(scale_i^2))`` from the product of the prior and the
experts of the *encoded* modalities (:meth:`TwinModule.posterior`).

Encoded and scored masks are separate so that training can encode a subset of an
individual's modalities (modality dropout) and score either the same subset (an ELBO
of the marginal of that subset, which trains ``q(z | subset)`` towards
``p(z | subset)``) or everything observed (cross-reconstruction).  Per-individual
weights scale both the likelihood and the KL term; ``kl_weight`` scales the KL term
only (warm-up).

The decoders' Bayesian output layers (``ModalitySpec.decoder_weights``) are sampled
inside the decoders with the local reparameterisation trick; the KL divergence of
their weights is a global term that the training loop adds once per step
(:func:`twin.model.training.train_epoch`), not a per-individual site.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from twin.model.data import ObservedData
from twin.model.module import TwinModule


@dataclass
class TrainingBatch:
    """Data to encode (with its masks), masks to score, and per-individual weights."""

    encoded: ObservedData
    scored_masks: dict[str, torch.Tensor]
    weights: torch.Tensor


class TwinPyroModel:
    """Pyro ``model``/``guide`` pair around a :class:`TwinModule` (no global param store)."""

    def __init__(self, module: TwinModule):
        self.module = module

    def model(self, batch: TrainingBatch, kl_weight: float = 1.0) -> None:
        data = batch.encoded
        n, d = len(data), self.module.latent_dim
        ref = data.covariates
        with pyro.plate("individuals", n), poutine.scale(scale=batch.weights):
            with poutine.scale(scale=kl_weight):
                z = pyro.sample(
                    "z",
                    dist.Normal(ref.new_zeros(n, d), ref.new_ones(n, d)).to_event(1),
                )
            raw = self.module.decode(z, data.covariates)
            for name, block in self.module.items():
                values, mask = data.values[name], batch.scored_masks[name]
                for k, (head, r) in enumerate(block.split(raw[name])):
                    v, m = values[:, head.index], mask[:, head.index]
                    target = torch.where(m, head.target(v), head.placeholder(v))
                    pyro.sample(
                        f"x/{name}/{k}",
                        head.distribution(r).mask(m).to_event(1),
                        obs=target,
                    )

    def guide(self, batch: TrainingBatch, kl_weight: float = 1.0) -> None:
        loc, scale = self.module.posterior(batch.encoded)
        with pyro.plate("individuals", len(batch.encoded)), poutine.scale(scale=batch.weights):
            with poutine.scale(scale=kl_weight):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))
