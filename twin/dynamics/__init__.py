"""Latent dynamics of longitudinal twins: exact linear-Gaussian SDEs, Kalman
filtering/smoothing on irregular times, intervention exposures and batched
simulation.
"""

from twin.dynamics.exposure import (
    exposure_from_interventions,
    exposure_from_table,
    schedule_exposure,
)
from twin.dynamics.kalman import (
    GaussianUpdate,
    KalmanResult,
    SmootherResult,
    gaussian_update,
    kalman_filter,
    rts_smoother,
)
from twin.dynamics.linear_gaussian import (
    Discretization,
    LinearGaussianDynamics,
    discretize_lti,
    psd_sqrt,
)
from twin.dynamics.neural import NeuralDynamics
from twin.dynamics.simulate import simulate_latent

__all__ = [
    "Discretization",
    "GaussianUpdate",
    "KalmanResult",
    "LinearGaussianDynamics",
    "NeuralDynamics",
    "SmootherResult",
    "discretize_lti",
    "exposure_from_interventions",
    "exposure_from_table",
    "gaussian_update",
    "kalman_filter",
    "psd_sqrt",
    "rts_smoother",
    "schedule_exposure",
    "simulate_latent",
]
