"""Non-decreasing means across a modality's features: a growth curve decoder head.

A property measured at increasing ages (concrete strength at 3, 7, 28, ... days), or
any quantity that cannot fall along an ordered set of features, should have
conditional means that never decrease along that order.  A free decoder does not
know it: on the concrete data a per-age decoder learns which mixes happened to be
tested late, and predicts 365-day strengths below the 180-day ones.

:class:`IncreasingMeans` re-parameterises the decoder's raw output of such a modality
(all features continuous, in schema order) on the data scale:

    m_1 = c_1 + s_1 r_1,
    m_k = m_{k-1} + s̄ · softplus(r_k + b_k),      k = 2..K,

with ``c``, ``s`` the features' training centre and scale, ``s̄`` their mean scale, and
``b_k`` set at :meth:`fit_statistics` so that a raw output of 0 gives the training
centres' own (non-decreasing) increments.  The result goes back to the standardised
scale the likelihood heads use, ``(m_k - c_k) / s_k``, so heads, training and
imputation are unchanged.  Every latent draw then gives a non-decreasing curve of
means; predictive draws add each feature's own noise on top.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["IncreasingMeans", "increasing_means_jax"]

#: Smallest initial increment between neighbouring features, as a share of ``s̄``.
_MIN_STEP = 0.01


def _inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


class IncreasingMeans(nn.Module):
    """Map raw decoder outputs ``(..., K)`` to standardised means non-decreasing in ``k``.

    Parameters
    ----------
    n_features
        Number of ordered continuous features (at least 2).
    """

    def __init__(self, n_features: int):
        super().__init__()
        if n_features < 2:
            raise ValueError("non-decreasing means need at least two ordered features")
        self.register_buffer("center", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.register_buffer("step_offset", torch.zeros(n_features - 1))
        self.register_buffer("step_scale", torch.ones(()))

    def fit_statistics(self, center: torch.Tensor, scale: torch.Tensor) -> None:
        """Take the likelihood head's training centre and scale per feature."""
        self.center.copy_(center)
        self.scale.copy_(scale)
        ref = scale.mean()
        self.step_scale.copy_(ref)
        steps = torch.diff(center).clamp_min(_MIN_STEP * ref) / ref
        self.step_offset.copy_(_inverse_softplus(steps))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        first = self.center[0] + self.scale[0] * raw[..., :1]
        steps = self.step_scale * F.softplus(raw[..., 1:] + self.step_offset)
        means = torch.cat([first, first + torch.cumsum(steps, dim=-1)], dim=-1)
        return (means - self.center) / self.scale

    def export(self) -> dict:
        """The buffers as numpy arrays (for :func:`increasing_means_jax`)."""
        return {
            k: v.detach().cpu().numpy().astype(np.float64) for k, v in self.state_dict().items()
        }

    def extra_repr(self) -> str:
        return f"n_features={self.center.numel()}"


def increasing_means_jax(params: Mapping[str, np.ndarray], raw):
    """JAX version of :meth:`IncreasingMeans.forward` for one row ``raw`` ``(K,)``."""
    import jax
    import jax.numpy as jnp

    f32 = jnp.float32
    center, scale = jnp.asarray(params["center"], f32), jnp.asarray(params["scale"], f32)
    first = center[0] + scale[0] * raw[:1]
    step = float(np.asarray(params["step_scale"])) * jax.nn.softplus(
        raw[1:] + jnp.asarray(params["step_offset"], f32)
    )
    means = jnp.concatenate([first, first + jnp.cumsum(step)])
    return (means - center) / scale
