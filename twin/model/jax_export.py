"""Decoders and likelihoods as pure JAX functions of exported weights.

:func:`export_model` copies a fitted model's decoder weights and likelihood
parameters into plain numpy arrays (no pickle, no torch objects);
:func:`make_log_likelihood` builds ``z -> log p(x_observed | z)`` for one individual
as a pure JAX function of those arrays.  This independent re-implementation is what
:mod:`twin.model.nuts_check` samples with NumPyro NUTS, so a disagreement with the
torch model would show up there; :func:`torch_log_likelihood` gives the torch value
for the same inputs to test the two against each other.

JAX is imported lazily: importing :mod:`twin.model` does not need it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from twin.model.increasing import increasing_means_jax
from twin.model.likelihoods import CategoricalHead, LikelihoodHead, NegativeBinomialHead


def _head_params(head: LikelihoodHead) -> dict:
    p: dict = {
        "family": head.family,
        "index": head.index.cpu().numpy(),
        "n_outputs": head.n_outputs,
    }
    if head.family in ("gaussian", "student_t"):
        p["center"] = head.center.cpu().numpy()
        p["scale"] = head.scale.cpu().numpy()
        p["sigma"] = head.sigma.detach().cpu().numpy()
    if head.family == "student_t":
        p["df"] = head.df.detach().cpu().numpy()
    if isinstance(head, CategoricalHead):
        p["gather"] = head.gather.cpu().numpy()
    if isinstance(head, NegativeBinomialHead):
        p["log_offset"] = head.log_offset.cpu().numpy()
        if head.family == "negative_binomial":
            p["total_count"] = head.total_count.detach().cpu().numpy()
    return p


def export_model(model) -> dict:
    """Decoder weights and likelihood parameters of a fitted model, as numpy arrays.

    Returns
    -------
    dict
        ``{"latent_dim": d, "latent_shift": (d,), "latent_scale": (d,),
        "expert_temperature": {name: tau}, "modalities": {name: {"decoder": {...},
        "heads": [...], "increasing": None or {...}}}}``; decoders are described by
        :meth:`twin.nn.Decoder.export` and take ``latent_shift + latent_scale * z`` as
        input; ``increasing`` holds the buffers of
        :class:`~twin.model.increasing.IncreasingMeans`, applied to the decoder output.
    """
    module = model._require_fitted()
    out: dict = {
        "latent_dim": module.latent_dim,
        "latent_shift": module.latent_shift.cpu().numpy().astype(np.float64),
        "latent_scale": module.latent_scale.cpu().numpy().astype(np.float64),
        "expert_temperature": dict(
            zip(module.names, module.expert_temperature.tolist(), strict=True)
        ),
        "modalities": {},
    }
    for name, block in module.items():
        out["modalities"][name] = {
            "decoder": block.decoder.export(),
            "n_covariates": block.decoder.n_covariates,
            "heads": [_head_params(h) for h in block.heads],
            "increasing": None if block.increasing is None else block.increasing.export(),
        }
    return out


def _activation(name: str) -> Callable:
    import jax
    import jax.numpy as jnp

    table = {"elu": jax.nn.elu, "silu": jax.nn.silu, "tanh": jnp.tanh, "relu": jax.nn.relu}
    if name not in table:
        raise NotImplementedError(f"no JAX version of activation {name!r}")
    return table[name]


def _decoder_forward(decoder: Mapping, x):
    import jax.numpy as jnp

    if decoder["family"] != "mlp":
        raise NotImplementedError(f"no JAX forward pass for decoder family {decoder['family']!r}")
    act = _activation(decoder["activation"])
    layers = decoder["layers"]
    for w, b in layers[:-1]:
        x = act(x @ jnp.asarray(w.T, jnp.float32) + jnp.asarray(b, jnp.float32))
    w, b = layers[-1]
    return x @ jnp.asarray(w.T, jnp.float32) + jnp.asarray(b, jnp.float32)


def _head_log_prob(head: Mapping, raw, values: np.ndarray, mask: np.ndarray):
    """Sum of log-likelihoods of the head's observed entries (JAX)."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import gammaln
    from jax.scipy.stats import t as student_t

    idx = head["index"]
    v = jnp.asarray(values[idx], jnp.float32)
    m = jnp.asarray(mask[idx])
    fam = head["family"]
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    if fam in ("gaussian", "student_t"):
        target = (v - f32(head["center"])) / f32(head["scale"])
        sigma = f32(head["sigma"])
        if fam == "gaussian":
            lp = -0.5 * ((target - raw) / sigma) ** 2 - jnp.log(sigma) - 0.5 * jnp.log(2 * jnp.pi)
        else:
            lp = student_t.logpdf(target, f32(head["df"]), loc=raw, scale=sigma)
    elif fam == "bernoulli":
        lp = v * jax.nn.log_sigmoid(raw) + (1 - v) * jax.nn.log_sigmoid(-raw)
    elif fam == "categorical":
        padded = jnp.concatenate([raw, jnp.full((1,), -1e9, raw.dtype)])
        logp = jax.nn.log_softmax(padded[head["gather"]], axis=-1)
        codes = jnp.asarray(np.where(mask[idx], values[idx], 0).astype(np.int32))
        lp = jnp.take_along_axis(logp, codes[:, None], axis=-1)[:, 0]
    elif fam in ("negative_binomial", "poisson"):
        log_mu = jnp.minimum(raw + f32(head["log_offset"]), 30.0)
        if fam == "poisson":
            lp = v * log_mu - jnp.exp(log_mu) - gammaln(v + 1)
        else:
            r = f32(head["total_count"])
            logits = log_mu - jnp.log(r)
            lp = (
                gammaln(v + r)
                - gammaln(r)
                - gammaln(v + 1)
                + r * jax.nn.log_sigmoid(-logits)
                + v * jax.nn.log_sigmoid(logits)
            )
    else:
        raise NotImplementedError(f"no JAX likelihood for {fam!r}")
    return jnp.where(m, lp, 0.0).sum()


def make_log_likelihood(
    exported: Mapping,
    values: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    covariates: np.ndarray | None = None,
    tempered: bool = False,
) -> Callable:
    """``z -> log p(x_observed | z)`` for one individual, as a pure JAX function.

    Parameters
    ----------
    exported
        Output of :func:`export_model`.
    values, masks
        Per modality, the individual's ``(F,)`` values (placeholders where unobserved)
        and bool mask, aligned to the model's schema.
    covariates
        The individual's encoded covariates ``(C,)``.
    tempered
        Multiply each modality's log-likelihood by its expert temperature.
    """
    import jax.numpy as jnp

    cov = (
        None if covariates is None or not len(covariates) else jnp.asarray(covariates, jnp.float32)
    )
    mods = exported["modalities"]
    shift = jnp.asarray(exported["latent_shift"], jnp.float32)
    scale = jnp.asarray(exported["latent_scale"], jnp.float32)

    def log_likelihood(z):
        total = 0.0
        z_net = shift + scale * z
        for name, spec in mods.items():
            if not np.asarray(masks[name]).any():
                continue
            x = z_net if not spec["n_covariates"] else jnp.concatenate([z_net, cov])
            raw = _decoder_forward(spec["decoder"], x)
            if spec.get("increasing") is not None:
                raw = increasing_means_jax(spec["increasing"], raw)
            tau = exported["expert_temperature"][name] if tempered else 1.0
            start = 0
            for head in spec["heads"]:
                width = int(head["n_outputs"])
                total = total + tau * _head_log_prob(
                    head,
                    raw[start : start + width],
                    np.asarray(values[name]),
                    np.asarray(masks[name]),
                )
                start += width
        return total

    return log_likelihood


def torch_log_likelihood(model, data, z: np.ndarray) -> np.ndarray:
    """The torch model's ``log p(x_observed | z)`` for prepared ``data`` and ``z`` ``(S, N, d)``."""
    module = model._require_fitted()
    module.eval()
    with torch.no_grad():
        zt = torch.as_tensor(z, dtype=torch.float32, device=model.device)
        return module.log_likelihood(zt, data).double().cpu().numpy()
