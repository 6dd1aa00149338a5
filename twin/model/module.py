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
        entry (per individual); entries are masked feature by feature.
        """
        experts, present = [], []
        for name, block in self.items():
            experts.append(block.expert(data.values[name], data.masks[name]))
            present.append(data.present(name))
        return product_of_experts(experts, present)

    def decode(self, z: torch.Tensor, covariates: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw decoder outputs per modality for latent ``z`` ``(..., N, latent_dim)``."""
        cov = covariates if covariates.shape[-1] else None
        return {name: block.decode(z, cov) for name, block in self.items()}

    def log_likelihood(self, z: torch.Tensor, data: ObservedData) -> torch.Tensor:
        """``log p(x_observed | z)`` summed over modalities; shape ``z.shape[:-1]``."""
        raw = self.decode(z, data.covariates)
        total = z.new_zeros(z.shape[:-1])
        for name, block in self.items():
            total = total + block.log_prob(raw[name], data.values[name], data.masks[name])
        return total
