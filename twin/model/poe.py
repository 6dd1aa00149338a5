"""Product of Gaussian experts: the posterior of ``z`` from the modalities observed."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from twin.nn.encoders import GaussianExpert


def product_of_experts(
    experts: Sequence[GaussianExpert],
    present: Sequence[torch.Tensor],
    prior_loc: torch.Tensor | float = 0.0,
    prior_precision: torch.Tensor | float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiply a diagonal Gaussian prior with the experts of the observed modalities.

    The product of diagonal Gaussians is Gaussian with precision
    ``prior_precision + sum_k present_k * precision_k`` and precision-weighted mean.
    An expert whose modality is absent for an individual (``present`` False) is left
    out exactly; nothing is zero-padded.

    Parameters
    ----------
    experts
        One expert per modality, each with ``loc``/``precision`` of shape ``(B, d)``.
    present
        One bool tensor ``(B,)`` per expert: whether that modality contributes.
    prior_loc, prior_precision
        Mean and precision (scalars or ``(d,)``) of the prior expert.

    Returns
    -------
    loc, scale
        Posterior mean and sd, ``(B, d)`` each.

    Examples
    --------
    >>> e = GaussianExpert(torch.tensor([[2.0]]), torch.tensor([[1.0]]))
    >>> loc, scale = product_of_experts([e], [torch.tensor([True])])
    >>> float(loc), round(float(scale), 4)
    (1.0, 0.7071)
    """
    if len(experts) != len(present):
        raise ValueError("one presence flag per expert is needed")
    if not experts:
        raise ValueError("at least one expert is needed to infer the batch shape")
    ref = experts[0].loc
    precision = torch.zeros_like(ref) + prior_precision
    weighted = precision * prior_loc
    for expert, on in zip(experts, present, strict=True):
        w = on.to(ref.dtype).unsqueeze(-1) * expert.precision
        precision = precision + w
        weighted = weighted + w * expert.loc
    return weighted / precision, precision.rsqrt()
