"""Encoders: one modality's observations -> a Gaussian expert on the shared latent ``z``.

Every encoder family implements the same small interface, :class:`Encoder`: it receives
the modality's observations as a tensor prepared by the model (for vector modalities:
standardised values with unobserved entries set to 0, plus the boolean mask, so that
"unobserved" is never confused with "observed 0"), and returns a
:class:`GaussianExpert` (mean and precision per latent dimension).  The model
multiplies the experts of the observed modalities with the prior
(:mod:`twin.model.poe`).

Image, track or contact-map encoders plug in by subclassing :class:`Encoder` and
registering a family name with :func:`register_encoder`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from twin.nn.layers import mlp

#: Smallest precision an expert may report (keeps the product of experts well posed).
MIN_PRECISION = 1e-4


class GaussianExpert(NamedTuple):
    """A diagonal Gaussian factor over ``z``: ``exp(-precision * (z - loc)**2 / 2)``."""

    loc: torch.Tensor
    precision: torch.Tensor


class Encoder(nn.Module):
    """Interface of an encoder family.

    Subclasses set :attr:`family` and implement :meth:`forward`.
    """

    family: str = ""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = int(latent_dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, covariates: torch.Tensor | None = None
    ) -> GaussianExpert:
        """Gaussian expert for each row of ``x``.

        Parameters
        ----------
        x
            Prepared observations, ``(batch, n_inputs)``; entries of unobserved features
            are 0 and carry no information on their own.
        mask
            ``(batch, n_features)`` bool, True where a feature was observed.
        covariates
            Optional ``(batch, n_covariates)`` encoded covariates.
        """
        raise NotImplementedError


class MLPEncoder(Encoder):
    """Multilayer perceptron on ``concat(x, mask[, covariates])``.

    Parameters
    ----------
    n_inputs
        Width of the prepared observations ``x``.
    n_features
        Number of features (width of the mask).
    latent_dim
        Dimension of ``z``.
    hidden
        Hidden layer widths; ``()`` gives a linear encoder.
    activation, dropout
        Non-linearity and dropout rate of the hidden layers.
    n_covariates
        Width of the encoded covariates fed to the encoder (0: none).
    """

    family = "mlp"

    def __init__(
        self,
        n_inputs: int,
        n_features: int,
        latent_dim: int,
        hidden: Sequence[int] = (128,),
        activation: str = "elu",
        dropout: float = 0.0,
        n_covariates: int = 0,
    ):
        super().__init__(latent_dim)
        self.n_covariates = int(n_covariates)
        self.net = mlp(
            n_inputs + n_features + self.n_covariates,
            hidden,
            2 * self.latent_dim,
            activation,
            dropout,
        )

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, covariates: torch.Tensor | None = None
    ) -> GaussianExpert:
        parts = [x, mask.to(x.dtype)]
        if self.n_covariates:
            if covariates is None:
                raise ValueError("this encoder was built to see covariates; none given")
            parts.append(covariates)
        out = self.net(torch.cat(parts, dim=-1))
        loc, raw = out.split(self.latent_dim, dim=-1)
        return GaussianExpert(loc, F.softplus(raw) + MIN_PRECISION)


ENCODER_FAMILIES: dict[str, type[Encoder]] = {"mlp": MLPEncoder}


def register_encoder(name: str) -> Callable[[type[Encoder]], type[Encoder]]:
    """Class decorator adding an encoder family under ``name``."""

    def add(cls: type[Encoder]) -> type[Encoder]:
        cls.family = name
        ENCODER_FAMILIES[name] = cls
        return cls

    return add


def build_encoder(family: str, **kwargs) -> Encoder:
    """Instantiate an encoder family by name (``"linear"`` is an MLP without hidden layers)."""
    if family == "linear":
        family, kwargs = "mlp", {**kwargs, "hidden": ()}
    if family not in ENCODER_FAMILIES:
        raise ValueError(f"unknown encoder family {family!r}; known: {sorted(ENCODER_FAMILIES)}")
    return ENCODER_FAMILIES[family](**kwargs)
