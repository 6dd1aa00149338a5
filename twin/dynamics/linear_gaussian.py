"""Continuous-time linear-Gaussian latent dynamics with exact discretisation.

The latent state ``z`` (dimension ``D``) of a twin follows the linear SDE

.. math::

    dz = (A z + B u(t) + b)\\,dt + L\\,dW, \\qquad Q_c = L L^\\top,

where ``u(t)`` (dimension ``P``, one column per intervention agent) is the
exposure built by :mod:`twin.dynamics.exposure`. Times are in days.

Over a gap ``dt`` with the input held constant at ``u`` (the *piecewise-constant
input* approximation: exposures are evaluated once per step, see
:func:`twin.dynamics.exposure.schedule_exposure` for step-averaged exposures), the
transition is exact::

    z(t + dt) | z(t) ~ N(F z(t) + Gamma (B u + b), Q)
    F     = expm(A dt)
    Q     = int_0^dt expm(A s) Q_c expm(A s)^T ds
    Gamma = int_0^dt expm(A s) ds

``F``, ``Q`` and ``Gamma`` come from Van Loan's block matrix exponentials,
computed with :func:`torch.linalg.matrix_exp` for a whole batch of gaps at once.
Long gaps are handled by scaling and squaring in time (``dt -> dt / 2**k`` then
``k`` exact doublings), which avoids the overflow of ``expm(-A dt)`` that the plain
Van Loan construction suffers for large ``dt``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

__all__ = [
    "Discretization",
    "LinearGaussianDynamics",
    "discretize_lti",
    "psd_sqrt",
]

#: Largest ``||A dt||_1`` handed to the block matrix exponential; larger gaps are
#: halved and recombined exactly (see :func:`discretize_lti`).
_MAX_SCALED_NORM = 1.0


class Discretization(NamedTuple):
    """Exact discretisation of the linear SDE over gaps ``dt``.

    Attributes
    ----------
    F : Tensor
        Transition matrices ``expm(A dt)``, shape ``(*dt.shape, D, D)``.
    Q : Tensor
        Process-noise covariances, shape ``(*dt.shape, D, D)``.
    Gamma : Tensor
        Input integrals ``int_0^dt expm(A s) ds``, shape ``(*dt.shape, D, D)``.
    """

    F: Tensor
    Q: Tensor
    Gamma: Tensor


def _van_loan(A: Tensor, Qc: Tensor, h: Tensor) -> Discretization:
    """Van Loan block exponentials for (small) gaps ``h`` of shape ``(...)``."""
    D = A.shape[-1]
    batch = h.shape
    hh = h[..., None, None]
    eye = torch.eye(D, dtype=A.dtype, device=A.device)
    # Both 2D x 2D block matrices go through one batched matrix_exp call.
    M = A.new_zeros((2, *batch, 2 * D, 2 * D))
    M[0, ..., :D, :D] = -A * hh
    M[0, ..., :D, D:] = Qc * hh
    M[0, ..., D:, D:] = A.mT * hh
    M[1, ..., :D, :D] = A * hh
    M[1, ..., :D, D:] = eye * hh
    E = torch.linalg.matrix_exp(M)
    F = E[0, ..., D:, D:].mT  # expm(A^T h)^T = expm(A h)
    Q = F @ E[0, ..., :D, D:]
    Q = 0.5 * (Q + Q.mT)
    Gamma = E[1, ..., :D, D:]
    return Discretization(F, Q, Gamma)


def discretize_lti(A: Tensor, Qc: Tensor, dt: Tensor) -> Discretization:
    """Exact discretisation of ``dz = A z dt + dW`` (``Cov dW = Q_c dt``) over gaps ``dt``.

    Parameters
    ----------
    A : Tensor
        Drift matrix, shape ``(D, D)``.
    Qc : Tensor
        Diffusion covariance ``L L^T``, shape ``(D, D)``.
    dt : Tensor
        Non-negative gaps of any shape (days). ``dt == 0`` gives exactly
        ``F = I``, ``Q = 0``, ``Gamma = 0``.

    Returns
    -------
    Discretization
        ``F``, ``Q``, ``Gamma`` each of shape ``(*dt.shape, D, D)``.

    Notes
    -----
    Each gap is divided by ``2**k`` so that ``||A dt / 2**k||_1 <= 1``, the Van Loan exponentials are taken at the reduced gap, and
    the results are doubled ``k`` times with the exact semigroup identities
    ``F(2h) = F(h)^2``, ``Q(2h) = F(h) Q(h) F(h)^T + Q(h)`` and
    ``Gamma(2h) = Gamma(h) + F(h) Gamma(h)``.
    """
    dt = torch.as_tensor(dt, dtype=A.dtype, device=A.device)
    if dt.numel() and bool((dt < 0).any()):
        raise ValueError("discretize: time gaps must be non-negative (times must be sorted)")
    if dt.numel() == 0:
        D = A.shape[-1]
        empty = A.new_zeros((*dt.shape, D, D))
        return Discretization(empty, empty.clone(), empty.clone())
    norm = torch.linalg.matrix_norm(A.detach(), ord=1)
    scale = (norm * dt.detach()) / _MAX_SCALED_NORM
    # Per-gap number of halvings, so a gap's result does not depend on the batch.
    k = torch.where(scale > 1, torch.ceil(torch.log2(scale)), torch.zeros_like(scale))
    F, Q, Gamma = _van_loan(A, Qc, dt / torch.exp2(k))
    for j in range(int(k.max())):
        active = (k > j)[..., None, None]
        Q = torch.where(active, F @ Q @ F.mT + Q, Q)
        Gamma = torch.where(active, Gamma + F @ Gamma, Gamma)
        F = torch.where(active, F @ F, F)
    Q = 0.5 * (Q + Q.mT)
    zero = (dt == 0)[..., None, None]
    if bool(zero.any()):
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        F = torch.where(zero, eye, F)
        Q = torch.where(zero, torch.zeros_like(Q), Q)
        Gamma = torch.where(zero, torch.zeros_like(Gamma), Gamma)
    return Discretization(F, Q, Gamma)


def psd_sqrt(cov: Tensor) -> Tensor:
    """A square-root factor ``S`` with ``S S^T = cov`` for PSD matrices ``(..., D, D)``.

    The lower Cholesky factor where it exists; for singular matrices (e.g. the zero
    process noise of a zero gap) the symmetric square root from an eigendecomposition,
    with negative rounding-error eigenvalues clipped to zero. Deterministic per matrix.
    """
    L, info = torch.linalg.cholesky_ex(cov)
    bad = info != 0
    if bool(bad.any()):
        sym = cov[bad]
        sym = 0.5 * (sym + sym.mT)
        evals, evecs = torch.linalg.eigh(sym)
        root = (evecs * evals.clamp_min(0).sqrt()[..., None, :]) @ evecs.mT
        L = L.clone()
        L[bad] = root
    return L


def _inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


class LinearGaussianDynamics(nn.Module):
    """Linear-Gaussian SDE ``dz = (A z + B u + b) dt + L dW`` on a ``D``-dimensional latent.

    Parameters
    ----------
    latent_dim : int
        ``D``.
    input_dim : int, default 0
        ``P``, the number of intervention agents (columns of the exposure).
    drift : {"stable", "free"}, default "stable"
        ``"stable"``: ``A = -(diag(softplus(r)) + U U^T) + (W - W^T)``. Its symmetric
        part is negative definite, so every eigenvalue of ``A`` has negative real
        part and the latent process is mean-reverting for any parameter value
        (the family excludes stable but strongly non-normal drifts).
        ``"free"``: ``A`` is an unconstrained parameter.
    timescale : float, default 30.0
        Initial relaxation time (days) of the stable parametrisation, i.e. the
        diagonal decay rates start at ``1 / timescale``.
    diffusion_scale : float, default 0.1
        Initial diffusion ``L = diffusion_scale * I`` (state units per sqrt(day)).
    dtype, device
        Parameter dtype and device.

    Notes
    -----
    The diffusion is parametrised by a lower-triangular ``L`` with a softplus
    diagonal, so ``Q_c = L L^T`` is positive definite. :meth:`from_matrices` builds
    a model with given ``A``, ``B``, ``b`` and ``Q_c`` (``drift="free"``, any PSD
    ``Q_c``).
    """

    def __init__(
        self,
        latent_dim: int,
        input_dim: int = 0,
        *,
        drift: str = "stable",
        timescale: float = 30.0,
        diffusion_scale: float = 0.1,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if drift not in ("stable", "free"):
            raise ValueError(f"drift must be 'stable' or 'free', got {drift!r}")
        if latent_dim < 1 or input_dim < 0:
            raise ValueError("latent_dim must be >= 1 and input_dim >= 0")
        D, P = int(latent_dim), int(input_dim)
        kw = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        self.latent_dim, self.input_dim, self.drift = D, P, drift
        self._free_diffusion = False
        rate = torch.full((D,), 1.0 / timescale, **kw)
        if drift == "stable":
            # U starts at 0.01 I (not 0, where U U^T has zero gradient); the diagonal
            # rates are lowered by the same 1e-4 so that A starts at -I / timescale.
            self.rate_raw = nn.Parameter(_inverse_softplus((rate - 1e-4).clamp_min(1e-6)))
            self.sym_factor = nn.Parameter(0.01 * torch.eye(D, **kw))
            self.skew_raw = nn.Parameter(torch.zeros(D, D, **kw))
        else:
            self.A_free = nn.Parameter(-torch.diag(rate))
        self.B = nn.Parameter(torch.zeros(D, P, **kw))
        self.b = nn.Parameter(torch.zeros(D, **kw))
        self.diff_diag_raw = nn.Parameter(
            _inverse_softplus(torch.full((D,), diffusion_scale, **kw))
        )
        self.diff_lower = nn.Parameter(torch.zeros(D, D, **kw))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_matrices(
        cls,
        A: Tensor,
        B: Tensor | None = None,
        b: Tensor | None = None,
        Qc: Tensor | None = None,
    ) -> LinearGaussianDynamics:
        """Model with the given drift ``A (D, D)``, input ``B (D, P)``, offset ``b (D,)``
        and diffusion covariance ``Qc (D, D)`` (PSD; default zero).

        Parameters take ``A``'s dtype and device; ``A`` is free (not constrained).
        """
        A = torch.as_tensor(A)
        D = A.shape[-1]
        kw = {"dtype": A.dtype, "device": A.device}
        B = torch.zeros(D, 0, **kw) if B is None else torch.as_tensor(B, **kw)
        model = cls(D, B.shape[-1], drift="free", dtype=A.dtype, device=A.device)
        Qc = torch.zeros(D, D, **kw) if Qc is None else torch.as_tensor(Qc, **kw)
        with torch.no_grad():
            model.A_free.copy_(A)
            model.B.copy_(B)
            if b is not None:
                model.b.copy_(torch.as_tensor(b, **kw))
        # Diffusion given directly: store a free square-root factor.
        del model.diff_diag_raw, model.diff_lower
        model.L_free = nn.Parameter(psd_sqrt(0.5 * (Qc + Qc.mT)).clone())
        model._free_diffusion = True
        return model

    # ------------------------------------------------------------------ matrices
    @property
    def A(self) -> Tensor:
        """Drift matrix ``(D, D)``."""
        if self.drift == "free":
            return self.A_free
        U = self.sym_factor
        return -(torch.diag(nnf.softplus(self.rate_raw)) + U @ U.mT) + (
            self.skew_raw - self.skew_raw.mT
        )

    @property
    def L(self) -> Tensor:
        """Diffusion factor ``(D, D)`` with ``Q_c = L L^T``."""
        if self._free_diffusion:
            return self.L_free
        return torch.tril(self.diff_lower, -1) + torch.diag(nnf.softplus(self.diff_diag_raw))

    @property
    def Qc(self) -> Tensor:
        """Diffusion covariance ``L L^T`` per day, ``(D, D)``."""
        L = self.L
        return L @ L.mT

    def drive(self, u: Tensor | None = None) -> Tensor:
        """Constant drift term ``B u + b``: shape ``(..., D)`` for ``u (..., P)``; ``b`` if ``u`` is None."""
        if u is None or self.input_dim == 0:
            return self.b
        if u.shape[-1] != self.input_dim:
            raise ValueError(f"input has {u.shape[-1]} agents, dynamics expects {self.input_dim}")
        return u.to(self.B.dtype) @ self.B.mT + self.b

    # ------------------------------------------------------------------ discretisation
    def discretize(self, dt: Tensor | float) -> Discretization:
        """Exact ``F``, ``Q``, ``Gamma`` for gaps ``dt`` of any shape (days, ``>= 0``).

        Repeated gap values are discretised once (the common case of a regular
        grid costs one matrix exponential). Gradients flow to the parameters.
        """
        A, Qc = self.A, self.Qc
        dt = torch.as_tensor(dt, dtype=A.dtype, device=A.device)
        if dt.requires_grad or dt.numel() <= 1:
            return discretize_lti(A, Qc, dt)
        values, inverse = torch.unique(dt, return_inverse=True)
        if values.numel() == dt.numel():
            return discretize_lti(A, Qc, dt)
        F, Q, G = discretize_lti(A, Qc, values)
        return Discretization(F[inverse], Q[inverse], G[inverse])

    # ------------------------------------------------------------------ moments
    def transition(
        self,
        mean: Tensor,
        cov: Tensor,
        dt: Tensor | float,
        u: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Propagate Gaussian moments over gaps ``dt`` with input ``u`` held constant.

        Parameters
        ----------
        mean : Tensor
            ``(..., D)``.
        cov : Tensor
            ``(..., D, D)``.
        dt : Tensor or float
            Gaps broadcastable to the batch shape ``...``.
        u : Tensor, optional
            Exposure ``(..., P)`` during the gap.

        Returns
        -------
        (Tensor, Tensor)
            Mean ``F m + Gamma (B u + b)`` and covariance ``F P F^T + Q``.
        """
        F, Q, Gamma = self.discretize(dt)
        drive = self.drive(u)
        new_mean = (F @ mean.unsqueeze(-1)).squeeze(-1) + (Gamma @ drive.unsqueeze(-1)).squeeze(-1)
        new_cov = F @ cov @ F.mT + Q
        return new_mean, 0.5 * (new_cov + new_cov.mT)

    def grid_terms(
        self, times: Tensor, u_grid: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-step ``F``, ``Q`` and offset ``Gamma (B u + b)`` on a time grid.

        Parameters
        ----------
        times : Tensor
            ``(..., T)`` sorted times.
        u_grid : Tensor, optional
            ``(..., T, P)`` (or ``(..., T-1, P)``); ``u_grid[..., k, :]`` is held over
            ``[t_k, t_{k+1})``.

        Returns
        -------
        F, Q : Tensor
            ``(..., T-1, D, D)``.
        offset : Tensor
            ``(..., T-1, D)``.
        """
        dt = times[..., 1:] - times[..., :-1]
        F, Q, Gamma = self.discretize(dt)
        if u_grid is not None:
            T = times.shape[-1]
            if u_grid.shape[-2] == T:
                u_grid = u_grid[..., :-1, :]
            elif u_grid.shape[-2] != T - 1:
                raise ValueError(f"u_grid has {u_grid.shape[-2]} steps for {T} times")
        drive = self.drive(u_grid)
        offset = (Gamma @ drive.unsqueeze(-1)).squeeze(-1)
        return F, Q, offset

    def sample_paths(
        self,
        z0: Tensor,
        times: Tensor,
        u_grid: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample latent trajectories on a time grid (exact transitions).

        Parameters
        ----------
        z0 : Tensor
            State at ``times[..., 0]``, shape ``(..., D)``.
        times : Tensor
            ``(T,)`` or ``(..., T)`` sorted times (days).
        u_grid : Tensor, optional
            Exposure ``(..., T, P)``; row ``k`` is held constant over ``[t_k, t_{k+1})``.
        generator : torch.Generator, optional
            Source of the Gaussian noise (on ``z0``'s device).

        Returns
        -------
        Tensor
            ``(..., T, D)`` with ``out[..., 0, :] == z0``.
        """
        times = torch.as_tensor(times, dtype=z0.dtype, device=z0.device)
        F, Q, offset = self.grid_terms(times.to(self.A.dtype), u_grid)
        F, offset = F.to(z0.dtype), offset.to(z0.dtype)
        S = psd_sqrt(Q).to(z0.dtype)
        batch = torch.broadcast_shapes(z0.shape[:-1], offset.shape[:-2], F.shape[:-3])
        n_steps, D = times.shape[-1] - 1, z0.shape[-1]
        eps = torch.randn(
            (*batch, n_steps, D, 1), generator=generator, dtype=z0.dtype, device=z0.device
        )
        noise = (S @ eps).squeeze(-1) + offset
        z = z0.expand(*batch, D)
        out = [z]
        for k in range(n_steps):
            z = (F[..., k, :, :] @ z.unsqueeze(-1)).squeeze(-1) + noise[..., k, :]
            out.append(z)
        return torch.stack(out, dim=-2)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, input_dim={self.input_dim}, drift={self.drift!r}"
