"""The torch module of the population model: one block per modality plus the PoE posterior."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from twin.cohort import CohortSchema
from twin.model.data import ObservedData
from twin.model.modality_block import ModalityBlock
from twin.model.poe import product_of_experts
from twin.model.specs import ModalitySpec
from twin.nn.encoders import GaussianExpert


class TwinModule(nn.Module):
    """Shared latent ``z ~ N(0, I)``; per modality an encoder (Gaussian expert) and a decoder.

    Parameters
    ----------
    schema
        The model's static modalities, in order.
    specs
        A :class:`ModalitySpec` per modality.
    latent_dim
        Dimension of ``z``.
    n_covariates
        Width of the encoded covariates given to the decoders.
    """

    def __init__(
        self,
        schema: CohortSchema,
        specs: Mapping[str, ModalitySpec],
        latent_dim: int,
        n_covariates: int = 0,
    ):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.names = list(schema.names)
        # a ModuleList (not a ModuleDict): modality names may contain '.'
        self.blocks = nn.ModuleList(
            ModalityBlock(schema[m], specs[m], self.latent_dim, n_covariates) for m in self.names
        )
        # power-posterior temperature of each modality's expert (twin.model.calibration);
        # 1 while training
        self.register_buffer("expert_temperature", torch.ones(len(self.names)))
        # affine map from the standardised latent z to the coordinates the networks use:
        # z_net = latent_shift + latent_scale * z  (identity until standardise_latent)
        self.register_buffer("latent_shift", torch.zeros(self.latent_dim))
        self.register_buffer("latent_scale", torch.ones(self.latent_dim))

    def block(self, name: str) -> ModalityBlock:
        return self.blocks[self.names.index(name)]

    def items(self):
        return zip(self.names, self.blocks, strict=True)

    def fit_statistics(self, data: ObservedData) -> None:
        """Standardisation and count offsets from the training data."""
        for name, block in self.items():
            block.fit_statistics(data.values[name], data.masks[name])

    def posterior(self, data: ObservedData) -> tuple[torch.Tensor, torch.Tensor]:
        """Amortised ``q(z | observed)``: loc and sd ``(N, latent_dim)``.

        The prior expert times the expert of every modality with at least one observed
        entry (per individual), each raised to its modality's ``expert_temperature``;
        entries are masked feature by feature.
        """
        experts, present = [], []
        shift, scale = self.latent_shift, self.latent_scale
        for tau, (name, block) in zip(self.expert_temperature, self.items(), strict=True):
            e = block.expert(data.values[name], data.masks[name])
            experts.append(GaussianExpert((e.loc - shift) / scale, e.precision * scale**2 * tau))
            present.append(data.present(name))
        return product_of_experts(experts, present)

    @torch.no_grad()
    def standardise_latent(self, data: ObservedData) -> None:
        """Re-centre and re-scale ``z`` so the aggregate posterior of ``data`` is standard.

        Training leaves the aggregate posterior of the training individuals (mean over
        individuals of ``q(z | x)``) wider than the ``N(0, I)`` prior; the decoders are
        fitted to where the posteriors lie, so drawing from the prior would make the
        model's predictive too narrow.  This moment-matches the aggregate per dimension
        (``m``, ``s``) and reparameterises ``z_net = m + s * z``: the prior ``N(0, I)``
        on the new ``z`` is the Gaussian fit to the aggregate posterior.
        """
        self.eval()
        loc, scale = self.posterior(data)
        total_var = loc.var(0, unbiased=False) + (scale**2).mean(0)
        mean = loc.mean(0)
        sd = total_var.clamp_min(1e-6).sqrt()
        # compose with the current map: z_net = shift + scale * (mean + sd * z_new)
        self.latent_shift.copy_(self.latent_shift + self.latent_scale * mean)
        self.latent_scale.copy_(self.latent_scale * sd)

    def decode(self, z: torch.Tensor, covariates: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw decoder outputs per modality for latent ``z`` ``(..., N, latent_dim)``."""
        cov = covariates if covariates.shape[-1] else None
        z_net = self.latent_shift + self.latent_scale * z
        return {name: block.decode(z_net, cov) for name, block in self.items()}

    def log_likelihood(
        self, z: torch.Tensor, data: ObservedData, tempered: bool = False
    ) -> torch.Tensor:
        """``log p(x_observed | z)`` summed over modalities; shape ``z.shape[:-1]``.

        With ``tempered`` each modality's term is multiplied by its expert temperature
        (the power likelihood whose posterior the tempered experts approximate).
        """
        raw = self.decode(z, data.covariates)
        total = z.new_zeros(z.shape[:-1])
        for tau, (name, block) in zip(self.expert_temperature, self.items(), strict=True):
            lp = block.log_prob(raw[name], data.values[name], data.masks[name])
            total = total + (tau * lp if tempered else lp)
        return total
