"""Decoders: the shared latent ``z`` (and covariates) -> raw likelihood parameters.

A decoder returns, for each row of ``z``, a flat vector of raw parameters of width
``n_outputs``; the model's likelihood heads (:mod:`twin.model.likelihoods`) cut it into
per-feature-group pieces (Gaussian means, logits, log-rates, ...).  Families share the
interface :class:`Decoder`; image or contact-map decoders plug in with
:func:`register_decoder`.  A decoder that should be checked with NumPyro also exposes
:meth:`Decoder.export` (plain arrays plus a description of its forward pass).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from twin.nn.layers import linear_layers, mlp, weight_kl


class Decoder(nn.Module):
    """Interface of a decoder family."""

    family: str = ""

    def __init__(self, latent_dim: int, n_outputs: int, n_covariates: int = 0):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.n_outputs = int(n_outputs)
        self.n_covariates = int(n_covariates)

    def forward(self, z: torch.Tensor, covariates: torch.Tensor | None = None) -> torch.Tensor:
        """Raw parameters ``(..., n_outputs)`` for latent ``z`` ``(..., latent_dim)``.

        ``covariates`` ``(..., n_covariates)`` broadcast against ``z``'s leading dims.
        """
        raise NotImplementedError

    def export(self) -> dict:
        """Weights as numpy arrays plus a description of the forward pass."""
        raise NotImplementedError(f"decoder family {self.family!r} cannot be exported")

    def kl(self) -> torch.Tensor:
        """KL divergence of the posterior over Bayesian weights from their prior (0 if none)."""
        return weight_kl(self)

    def _inputs(self, z: torch.Tensor, covariates: torch.Tensor | None) -> torch.Tensor:
        if not self.n_covariates:
            return z
        if covariates is None:
            raise ValueError("this decoder was built with covariates; none given")
        cov = covariates.expand(*z.shape[:-1], covariates.shape[-1])
        return torch.cat([z, cov], dim=-1)


class MLPDecoder(Decoder):
    """Multilayer perceptron on ``concat(z, covariates)``; ``hidden=()`` is linear.

    ``weights`` (see :func:`twin.nn.layers.mlp`): ``"point"`` estimates; ``"ard"``: the
    output layer is a :class:`~twin.nn.layers.BayesianLinear` (mean-field posterior over
    its weights) with an ARD prior per feature, so each feature's loadings are shrunk by
    the evidence for them (like a ridge regression whose penalty is learned) and their
    uncertainty enters the predictive; ``"group_ard"``: also the first layer, with an
    ARD prior per latent dimension, so a modality can switch off the dimensions it does
    not use (as in group factor analysis).
    """

    family = "mlp"

    def __init__(
        self,
        latent_dim: int,
        n_outputs: int,
        hidden: Sequence[int] = (128,),
        activation: str = "elu",
        dropout: float = 0.0,
        n_covariates: int = 0,
        weights: str = "point",
    ):
        super().__init__(latent_dim, n_outputs, n_covariates)
        self.activation = activation
        self.net = mlp(
            latent_dim + self.n_covariates, hidden, n_outputs, activation, dropout, weights
        )

    def forward(self, z: torch.Tensor, covariates: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self._inputs(z, covariates))

    def export(self) -> dict:
        layers = [
            (
                w.detach().cpu().numpy().astype(np.float64),
                b.detach().cpu().numpy().astype(np.float64),
            )
            for w, b in linear_layers(self.net)
        ]
        return {"family": "mlp", "activation": self.activation, "layers": layers}


DECODER_FAMILIES: dict[str, type[Decoder]] = {"mlp": MLPDecoder}


def register_decoder(name: str) -> Callable[[type[Decoder]], type[Decoder]]:
    """Class decorator adding a decoder family under ``name``."""

    def add(cls: type[Decoder]) -> type[Decoder]:
        cls.family = name
        DECODER_FAMILIES[name] = cls
        return cls

    return add


def build_decoder(family: str, **kwargs) -> Decoder:
    """Instantiate a decoder family by name (``"linear"`` is an MLP without hidden layers)."""
    if family == "linear":
        family, kwargs = "mlp", {**kwargs, "hidden": ()}
    if family not in DECODER_FAMILIES:
        raise ValueError(f"unknown decoder family {family!r}; known: {sorted(DECODER_FAMILIES)}")
    return DECODER_FAMILIES[family](**kwargs)
