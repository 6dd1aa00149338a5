"""Small building blocks shared by the encoder and decoder families."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

#: Activations an MLP may use, by name (the JAX re-implementation knows the same names).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}


def mlp(
    n_in: int,
    hidden: Sequence[int],
    n_out: int,
    activation: str = "elu",
    dropout: float = 0.0,
    bayesian_output: bool = False,
) -> nn.Sequential:
    """A plain multilayer perceptron ``Linear -> act -> dropout -> ... -> Linear``.

    With ``hidden=()`` it is a single linear map; with ``bayesian_output`` the last layer
    is a :class:`BayesianLinear`.  Only linear layers, an activation from
    :data:`ACTIVATIONS` and ``Dropout`` appear, so the forward pass is easy to replay
    elsewhere (see :mod:`twin.model.jax_export`).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, int(h)), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers.append(BayesianLinear(width, n_out) if bayesian_output else nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def linear_layers(net: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(weight, bias)`` of every linear layer of an :func:`mlp`, in order.

    For a :class:`BayesianLinear` these are the posterior-mean weights.
    """
    return [(m.weight, m.bias) for m in net if isinstance(m, nn.Linear | BayesianLinear)]


class BayesianLinear(nn.Module):
    """Linear layer with a mean-field Gaussian posterior over its weights and an ARD prior.

    ``q(W_jk) = N(loc_jk, scale_jk^2)``; prior ``W_jk ~ N(0, s_j^2)`` with one prior
    variance per output ``j`` set to its empirical-Bayes optimum
    ``s_j^2 = mean_k(loc_jk^2 + scale_jk^2)`` (automatic relevance determination:
    outputs without support in the data get small ``s_j`` and their weights shrink to
    0).  The bias is a point estimate.  While sampling, the output is drawn with the
    local reparameterisation trick (``N(x loc^T + b, x^2 (scale^2)^T)`` per row), which
    is exact for every entry's marginal and has low gradient variance; otherwise the
    posterior-mean weights are used.  Sampling is on while :attr:`sample_weights` is
    True (set by training and by predictive draws, see :func:`weight_sampling`).
    :meth:`kl` is ``KL(q(W) || p(W))`` at the optimal prior variances.
    """

    def __init__(self, n_in: int, n_out: int, init_scale: float = 0.02):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(n_in) if n_in else 0.0
        nn.init.uniform_(self.bias, -bound, bound)
        self.log_weight_scale = nn.Parameter(torch.full((n_out, n_in), math.log(init_scale)))
        self.sample_weights = False

    @property
    def weight_scale(self) -> torch.Tensor:
        return torch.exp(self.log_weight_scale)

    @property
    def prior_var(self) -> torch.Tensor:
        """Empirical-Bayes prior variance per output, ``(n_out,)``."""
        return (self.weight**2 + self.weight_scale**2).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = F.linear(x, self.weight, self.bias)
        if not self.sample_weights:
            return mean
        var = F.linear(x**2, self.weight_scale**2)
        return mean + torch.sqrt(var + 1e-12) * torch.randn_like(mean)

    def kl(self) -> torch.Tensor:
        n_in = self.weight.shape[1]
        return 0.5 * (n_in * torch.log(self.prior_var).sum() - 2 * self.log_weight_scale.sum())


@contextlib.contextmanager
def weight_sampling(module: nn.Module, on: bool = True) -> Iterator[None]:
    """Turn weight sampling of every :class:`BayesianLinear` in ``module`` on (or off)."""
    layers = [m for m in module.modules() if isinstance(m, BayesianLinear)]
    before = [m.sample_weights for m in layers]
    for m in layers:
        m.sample_weights = on
    try:
        yield
    finally:
        for m, b in zip(layers, before, strict=True):
            m.sample_weights = b


def weight_kl(module: nn.Module) -> torch.Tensor:
    """Sum of :meth:`BayesianLinear.kl` over ``module`` (0 without Bayesian layers)."""
    total = torch.zeros(())
    for m in module.modules():
        if isinstance(m, BayesianLinear):
            total = total.to(m.weight.device) + m.kl()
    return total
