"""Linear-Gaussian emission from the latent state to standardised features.

``y_t = H z_t + c + eps_t``, ``eps_t ~ N(0, diag(R))``, on the standardised scale of
:class:`~twin.model.feature_transform.FeatureTransform`. Linear and Gaussian, so Kalman
filtering and smoothing of the latent state stay exact; nonlinearity in the data
units (positive, skewed quantities) comes from the fixed per-feature transform.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

__all__ = ["GaussianEmission"]

#: Floor of the observation-noise variance (standardised units).
MIN_NOISE_VAR = 1e-6


def _inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


class GaussianEmission(nn.Module):
    """``y = H z + c + N(0, diag(R))`` for ``F`` features and a ``D``-dimensional latent.

    Parameters
    ----------
    n_features, latent_dim : int
        ``F`` and ``D``.
    noise : float, default 0.1
        Initial noise variance of every feature (standardised units).
    dtype, device
        Parameter dtype and device.

    Notes
    -----
    ``H`` starts at ``N(0, 1/D)`` entries (so ``H z`` has unit scale for a unit
    latent), ``c`` at zero, and ``R = softplus(r) + 1e-6``.
    """

    def __init__(
        self,
        n_features: int,
        latent_dim: int,
        *,
        noise: float = 0.1,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        kw = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        self.n_features, self.latent_dim = int(n_features), int(latent_dim)
        self.H = nn.Parameter(torch.randn(n_features, latent_dim, **kw) / latent_dim**0.5)
        self.c = nn.Parameter(torch.zeros(n_features, **kw))
        start = torch.full((n_features,), max(noise - MIN_NOISE_VAR, 1e-8), **kw)
        self.noise_raw = nn.Parameter(_inverse_softplus(start))

    @property
    def R(self) -> Tensor:
        """Observation-noise variances ``(F,)``."""
        return nnf.softplus(self.noise_raw) + MIN_NOISE_VAR

    def set_noise(self, variances: Tensor) -> None:
        """Set ``R`` (variances ``(F,)``, each above ``1e-6``)."""
        v = torch.as_tensor(variances, dtype=self.noise_raw.dtype, device=self.noise_raw.device)
        with torch.no_grad():
            self.noise_raw.copy_(_inverse_softplus((v - MIN_NOISE_VAR).clamp_min(1e-12)))

    def moments(self, mean: Tensor, cov: Tensor, noise: bool = True) -> tuple[Tensor, Tensor]:
        """Per-feature predictive mean and variance ``(..., F)`` of ``y`` for ``z ~ N(mean, cov)``.

        ``noise=False`` gives the moments of ``H z + c`` (the noise-free signal).
        """
        H = self.H.to(mean.dtype)
        m = mean @ H.mT + self.c.to(mean.dtype)
        var = ((H @ cov) * H).sum(-1)
        if noise:
            var = var + self.R.to(mean.dtype)
        return m, var

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, latent_dim={self.latent_dim}"
