"""Exact check of the amortised posterior with NumPyro NUTS.

For one individual, the posterior of ``z`` under the frozen, exported decoders
(:mod:`twin.model.jax_export`) is sampled with NUTS and compared with the fast
answer: the amortised product-of-experts posterior (and, optionally, the refined
one).  Agreement of the means within a fraction of the NUTS posterior sd says the
encoders do their job; a broken encoder shows up as large standardised differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin.cohort import Cohort
from twin.model.jax_export import export_model, make_log_likelihood


@dataclass
class NutsComparison:
    """Amortised vs NUTS posterior of one individual's ``z``.

    Attributes
    ----------
    individual
        The individual's id.
    nuts_mean, nuts_sd
        Posterior mean and sd of each latent dimension from NUTS.
    amortised_mean, amortised_sd
        The same from the amortised posterior (product of experts).
    refined_mean, refined_sd
        From the refined posterior, when refinement was asked for.
    nuts_samples
        The NUTS draws ``(num_samples, latent_dim)``.
    """

    individual: str
    nuts_mean: np.ndarray
    nuts_sd: np.ndarray
    amortised_mean: np.ndarray
    amortised_sd: np.ndarray
    refined_mean: np.ndarray | None = None
    refined_sd: np.ndarray | None = None
    nuts_samples: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)

    @property
    def standardized_difference(self) -> np.ndarray:
        """``(amortised_mean - nuts_mean) / nuts_sd`` per latent dimension."""
        return (self.amortised_mean - self.nuts_mean) / self.nuts_sd

    @property
    def refined_standardized_difference(self) -> np.ndarray | None:
        if self.refined_mean is None:
            return None
        return (self.refined_mean - self.nuts_mean) / self.nuts_sd

    @property
    def sd_ratio(self) -> np.ndarray:
        """``amortised_sd / nuts_sd`` per latent dimension (1 is perfect)."""
        return self.amortised_sd / self.nuts_sd

    def mean_abs_difference(self, refined: bool = False) -> float:
        """Average ``|standardised difference|`` over latent dimensions."""
        d = self.refined_standardized_difference if refined else self.standardized_difference
        if d is None:
            raise ValueError("no refined posterior in this comparison")
        return float(np.mean(np.abs(d)))

    def agrees(self, tolerance: float = 0.5, refined: bool = False) -> bool:
        """Whether the mean ``|Δmean| / sd_NUTS`` is below ``tolerance``."""
        return self.mean_abs_difference(refined) < tolerance

    def __repr__(self) -> str:
        lines = [
            f"<NutsComparison for {self.individual!r}: mean |Δmean|/sd = "
            f"{self.mean_abs_difference():.3f} (amortised)"
            + (
                f", {self.mean_abs_difference(True):.3f} (refined)"
                if self.refined_mean is not None
                else ""
            )
            + ">",
            "   dim   nuts mean  nuts sd   amort mean  amort sd   std diff",
        ]
        for k in range(len(self.nuts_mean)):
            lines.append(
                f"  {k:>4} {self.nuts_mean[k]:>10.3f} {self.nuts_sd[k]:>8.3f} "
                f"{self.amortised_mean[k]:>11.3f} {self.amortised_sd[k]:>9.3f} "
                f"{self.standardized_difference[k]:>10.2f}"
            )
        return "\n".join(lines)


def nuts_posterior(
    model,
    cohort: Cohort,
    individual: str,
    *,
    num_warmup: int = 500,
    num_samples: int = 1000,
    seed: int = 0,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """NUTS draws ``(num_samples, latent_dim)`` of ``z`` for one individual of ``cohort``.

    The target is ``N(z; 0, I) * prod_m p(x_m,observed | z) ** tau_m`` with the decoders
    evaluated as pure JAX functions of the exported (posterior-mean) weights and
    ``tau_m`` the calibrated expert temperatures (1 unless calibration tempered the
    experts; the amortised and refined posteriors target the same tempered posterior).  The chain starts at ``init`` (default: the
    prior mean 0, independent of the encoders being checked).
    """
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist
    from numpyro.infer import MCMC, NUTS, init_to_value

    data = model.prepare(cohort.select([individual])).to("cpu")
    exported = export_model(model)
    values = {m: v[0].numpy() for m, v in data.values.items()}
    masks = {m: k[0].numpy() for m, k in data.masks.items()}
    loglik = make_log_likelihood(exported, values, masks, data.covariates[0].numpy(), tempered=True)
    d = exported["latent_dim"]

    def numpyro_model():
        z = numpyro.sample("z", ndist.Normal(jnp.zeros(d), 1.0).to_event(1))
        numpyro.factor("x", loglik(z))

    start = np.zeros(d) if init is None else np.asarray(init)
    kernel = NUTS(
        numpyro_model, init_strategy=init_to_value(values={"z": jnp.asarray(start, jnp.float32)})
    )
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed))
    return np.asarray(mcmc.get_samples()["z"], dtype=np.float64)


def compare_with_nuts(
    model,
    cohort: Cohort,
    individual: str,
    *,
    num_warmup: int = 500,
    num_samples: int = 1000,
    seed: int = 0,
    refine_steps: int = 0,
    covariance: str = "full",
    nuts_samples: np.ndarray | None = None,
) -> NutsComparison:
    """Compare the amortised (and refined) posterior of ``z`` with NUTS for one individual.

    Parameters
    ----------
    model
        A fitted :class:`~twin.TwinModel`.
    cohort
        Cohort holding the individual's observations (any subset of modalities).
    individual
        The individual's id.
    num_warmup, num_samples, seed
        NUTS settings.
    refine_steps, covariance
        If ``refine_steps > 0``, also compare the refined posterior.
    nuts_samples
        Draws from an earlier NUTS run for the same individual and decoders (e.g.
        ``report.nuts_samples``), to check another encoder without sampling again.

    Returns
    -------
    NutsComparison
    """
    one = cohort.select([individual])
    twins = model.instantiate(one)
    amort_mean = twins.loc[0].double().cpu().numpy()
    amort_sd = np.sqrt((twins.scale_tril[0] ** 2).sum(-1).double().cpu().numpy())
    refined_mean = refined_sd = None
    if refine_steps > 0:
        ref = model.instantiate(one, refine_steps=refine_steps, covariance=covariance, seed=seed)
        refined_mean = ref.loc[0].double().cpu().numpy()
        refined_sd = np.sqrt((ref.scale_tril[0] ** 2).sum(-1).double().cpu().numpy())
    if nuts_samples is None:
        samples = nuts_posterior(
            model, cohort, individual, num_warmup=num_warmup, num_samples=num_samples, seed=seed
        )
    else:
        samples = np.asarray(nuts_samples, dtype=np.float64)
    return NutsComparison(
        individual=str(individual),
        nuts_mean=samples.mean(0),
        nuts_sd=samples.std(0, ddof=1),
        amortised_mean=amort_mean,
        amortised_sd=amort_sd,
        refined_mean=refined_mean,
        refined_sd=refined_sd,
        nuts_samples=samples,
    )
