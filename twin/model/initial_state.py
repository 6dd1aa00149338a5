"""Prior of the latent state at an individual's first observation.

``z(t_first) ~ N(m0 + W x, P0 + W S_x W^T)`` where ``x`` is an optional per-individual
*context* vector with covariance ``S_x``: encoded covariates (known exactly, ``S_x =
0``) and/or the posterior mean of a static :class:`~twin.TwinModel` twin (``S_x`` its
posterior covariance, so the static uncertainty propagates into the initial state).
``m0``, ``W`` and the lower Cholesky factor of ``P0`` are learned with the dynamics.
With no context the prior is the same for everyone: the population distribution of
the state at a first visit, whose spread carries the individual random effects.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

__all__ = ["InitialStatePrior"]


def _inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


class InitialStatePrior(nn.Module):
    """Gaussian initial-state prior with an optional linear map from a context vector.

    Parameters
    ----------
    latent_dim : int
        ``D``.
    context_dim : int, default 0
        ``C``, length of the context vector ``x``.
    scale : float, default 1.0
        Initial prior sd of every latent coordinate.
    """

    def __init__(
        self,
        latent_dim: int,
        context_dim: int = 0,
        *,
        scale: float = 1.0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        kw = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        self.latent_dim, self.context_dim = int(latent_dim), int(context_dim)
        self.m0 = nn.Parameter(torch.zeros(latent_dim, **kw))
        self.W = nn.Parameter(torch.zeros(latent_dim, context_dim, **kw))
        self.diag_raw = nn.Parameter(_inverse_softplus(torch.full((latent_dim,), scale, **kw)))
        self.lower = nn.Parameter(torch.zeros(latent_dim, latent_dim, **kw))

    @property
    def scale_tril(self) -> Tensor:
        """Lower Cholesky factor of ``P0``."""
        return torch.tril(self.lower, -1) + torch.diag(nnf.softplus(self.diag_raw) + 1e-6)

    def forward(
        self, context: Tensor | None = None, context_cov: Tensor | None = None, n: int = 1
    ) -> tuple[Tensor, Tensor]:
        """Prior mean ``(N, D)`` and covariance ``(N, D, D)``.

        Parameters
        ----------
        context : Tensor, optional
            ``(N, C)``; required when ``context_dim > 0``.
        context_cov : Tensor, optional
            ``(N, C, C)`` uncertainty of the context (default zero).
        n : int
            Number of individuals when there is no context.
        """
        L = self.scale_tril
        P0 = L @ L.mT
        if self.context_dim == 0:
            return self.m0.expand(n, -1), P0.expand(n, -1, -1)
        if context is None or context.shape[-1] != self.context_dim:
            raise ValueError(f"the initial-state prior needs a context of width {self.context_dim}")
        mean = self.m0 + context.to(self.m0.dtype) @ self.W.mT
        cov = P0.expand(context.shape[0], -1, -1)
        if context_cov is not None:
            extra = self.W @ context_cov.to(self.W.dtype) @ self.W.mT
            cov = cov + 0.5 * (extra + extra.mT)
        return mean, cov

    def set(self, mean: Tensor, cov: Tensor) -> None:
        """Set ``m0`` and ``P0`` (positive definite) directly; ``W`` becomes zero."""
        with torch.no_grad():
            self.m0.copy_(torch.as_tensor(mean, dtype=self.m0.dtype))
            L = torch.linalg.cholesky(torch.as_tensor(cov, dtype=self.m0.dtype))
            d = torch.diagonal(L).clamp_min(2e-6) - 1e-6
            self.diag_raw.copy_(_inverse_softplus(d))
            self.lower.copy_(torch.tril(L, -1))
            self.W.zero_()

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, context_dim={self.context_dim}"
