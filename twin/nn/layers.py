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


#: Treatments of an MLP's weights (see :func:`mlp`).
WEIGHT_PRIORS = ("point", "ard", "group_ard")


def mlp(
    n_in: int,
    hidden: Sequence[int],
    n_out: int,
    activation: str = "elu",
    dropout: float = 0.0,
    weights: str = "point",
) -> nn.Sequential:
    """A plain multilayer perceptron ``Linear -> act -> dropout -> ... -> Linear``.

    With ``hidden=()`` it is a single linear map.  ``weights`` chooses the treatment of
    the weights: ``"point"`` (plain ``Linear``), ``"ard"`` (the last layer is a
    :class:`BayesianLinear` with an ARD prior per output: which outputs are
    predictable) or ``"group_ard"`` (additionally the first layer with an ARD prior per
    input: which inputs matter).  Only linear layers, an activation from
    :data:`ACTIVATIONS` and ``Dropout`` appear, so the forward pass is easy to replay
    elsewhere (see :mod:`twin.model.jax_export`).
    """
    if weights not in WEIGHT_PRIORS:
        raise ValueError(f"weights must be one of {WEIGHT_PRIORS}, got {weights!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = n_in
    for i, h in enumerate(hidden):
        first = weights == "group_ard" and i == 0
        layers += [
            BayesianLinear(width, int(h), ard="input") if first else nn.Linear(width, int(h)),
            ACTIVATIONS[activation](),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    bayesian_last = weights == "ard" or (weights == "group_ard" and hidden)
    layers.append(BayesianLinear(width, n_out) if bayesian_last else nn.Linear(width, n_out))
    if weights == "group_ard" and not hidden:  # one layer: ARD per input (latent dimension)
        layers[-1] = BayesianLinear(width, n_out, ard="input")
    return nn.Sequential(*layers)


def linear_layers(net: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(weight, bias)`` of every linear layer of an :func:`mlp`, in order.

    For a :class:`BayesianLinear` these are the posterior-mean weights.
    """
    return [(m.weight, m.bias) for m in net if isinstance(m, nn.Linear | BayesianLinear)]


class BayesianLinear(nn.Module):
    """Linear layer with a mean-field Gaussian posterior over its weights and an ARD prior.

    ``q(W_jk) = N(loc_jk, scale_jk^2)`` for output ``j`` and input ``k``; the prior is
    ``N(0, s_g^2)`` with one variance per group ``g``: per output row
    (``ard="output"``: a feature's loadings) or per input column (``ard="input"``: one
    latent dimension's effect on the whole modality, as in group factor analysis).
    Each prior variance sits at its empirical-Bayes optimum (the mean of
    ``loc^2 + scale^2`` over the group), so groups without support in the data shrink
    to 0 (automatic relevance determination).  The bias is a point estimate.

    While :attr:`sample_weights` is True (training, predictive draws; see
    :func:`weight_sampling`) the output is drawn with the local reparameterisation trick
    (``N(x loc^T + b, x^2 (scale^2)^T)`` per row), exact for every entry's marginal;
    otherwise the posterior-mean weights are used.  :meth:`kl` is ``KL(q(W) || p(W))``.
    """

    def __init__(self, n_in: int, n_out: int, ard: str = "output", init_scale: float = 0.02):
        super().__init__()
        if ard not in ("output", "input"):
            raise ValueError("ard must be 'output' or 'input'")
        self.ard = ard
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
        """Empirical-Bayes prior variance per group (``(n_out,)`` or ``(n_in,)``)."""
        second_moment = self.weight**2 + self.weight_scale**2
        return second_moment.mean(dim=1 if self.ard == "output" else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = F.linear(x, self.weight, self.bias)
        if not self.sample_weights:
            return mean
        var = F.linear(x**2, self.weight_scale**2)
        return mean + torch.sqrt(var + 1e-12) * torch.randn_like(mean)

    def kl(self) -> torch.Tensor:
        group_size = self.weight.shape[1] if self.ard == "output" else self.weight.shape[0]
        return 0.5 * (
            group_size * torch.log(self.prior_var).sum() - 2 * self.log_weight_scale.sum()
        )


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
