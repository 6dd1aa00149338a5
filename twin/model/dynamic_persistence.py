"""Save and load a :class:`~twin.model.dynamic_model.DynamicTwinModel` without pickle.

A saved model is a folder with two files:

* ``weights.pt``: the module's ``state_dict`` (plain tensors only), read back with
  ``torch.load(weights_only=True)``;
* ``model.json``: format name and version, twin version, the modelled schema and its
  hash, the configuration (features, agents, transforms, exposures, priors,
  covariate encoding, standardisation, time scales), training settings and history,
  and the SHA-256 of ``weights.pt``.

Each file is written atomically; an existing model is never replaced unless asked.
Loading refuses another format (e.g. a static ``TwinModel`` folder) or version, a
schema whose hash does not match, weights that are not the ones the metadata was
written with, and (when a schema is given) a schema that describes the modelled
features differently, naming what differs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twin.cohort import CohortSchema
from twin.model.context_encoding import ContextEncoding
from twin.model.dynamic_training import DynamicTrainingConfig, DynamicTrainingHistory
from twin.model.feature_transform import FeatureTransform
from twin.model.model_folder import (
    attach_loaded_module,
    load_weights_into,
    metadata_header,
    plain_json_value,
    read_model_metadata,
    read_weights,
    verified_weights_path,
    write_model_folder,
)

FORMAT = "twin.DynamicTwinModel"
FORMAT_VERSION = 1

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def save_dynamic_model(model: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``model`` into the folder ``path``; see the module docstring."""
    module = model._require_fitted()
    meta = {
        **metadata_header(FORMAT, FORMAT_VERSION, model.schema),
        "config": {
            "features": [list(p) for p in model.features],
            "latent_dim": model.latent_dim,
            "agents": list(model.agents or []),
            "transforms": dict(model.transform_spec),
            "dynamics": model.dynamics_kind,
            "prior_effects": model.prior_spec,
            "agent_exposure": model.agent_exposure,
            "covariates": list(model.covariates),
            "timescales": list(model.timescales) if model.timescales else None,
            "time_unit": model.time_unit,
            "insert_events": model.insert_events,
            "standardize": model.standardize,
            "neural": model.neural,
            "effect_prior_sd": model.effect_prior_sd,
            "structure": model.structure,
            "dtype": str(model.dtype).replace("torch.", ""),
        },
        "transform": model.transform.to_dict(),
        "context": model.context.to_dict() if model.context else None,
        "static_dim": model.static_dim,
        "training": model.training_config.to_dict() if model.training_config else None,
        "history": model.history.to_dict() if model.history else None,
        "agent_names": dict(model.agent_names),
        "forecast_scale": (
            None if model.forecast_scale is None else [float(c) for c in model.forecast_scale]
        ),
    }
    return write_model_folder(
        path, module, meta, overwrite=overwrite, json_default=plain_json_value
    )


def read_dynamic_metadata(path: str | os.PathLike) -> dict:
    """The checked ``model.json`` of a saved dynamic model."""
    return read_model_metadata(
        path, FORMAT, FORMAT_VERSION, "; a static TwinModel loads with twin.TwinModel.load"
    )


def load_dynamic_model(
    path: str | os.PathLike,
    schema: CohortSchema | None = None,
    static_model: Any = None,
    device: str | torch.device = "auto",
    num_threads: int | None = 1,
):
    """Read a model written by :func:`save_dynamic_model`."""
    from twin.model.dynamic_model import DynamicTwinModel, _restrict

    meta = read_dynamic_metadata(path)
    saved = CohortSchema.from_dict(meta["schema"])
    cfg = meta["config"]
    pairs = [tuple(p) for p in cfg["features"]]
    if schema is not None:
        problems = []
        for m, f in pairs:
            if m not in schema:
                problems.append(f"modality {m!r} is missing from the given schema")
            elif f not in schema[m].feature_names:
                problems.append(f"feature {f!r} of {m!r} is missing from the given schema")
        if not problems:
            given = _restrict(
                schema, pairs, [c for c in saved.covariates if c in schema.covariates]
            )
            problems = CohortSchema(saved.modalities).diff(CohortSchema(given.modalities))
            absent = [c for c in saved.covariates if c not in schema.covariates]
            problems += [f"covariate {c!r} is missing from the given schema" for c in absent]
        if problems:
            raise ValueError(
                "the saved model was trained on another schema (saved vs given): "
                + "; ".join(problems[:8])
            )
    weights_path = verified_weights_path(path, meta)
    static_dim = int(meta.get("static_dim") or 0)
    if static_dim and static_model is None:
        raise ValueError(
            f"{path}: the model was trained with a static model (latent_dim {static_dim}); "
            "pass static_model= to load it"
        )
    modalities = list(dict.fromkeys(m for m, _ in pairs))
    features = {m: [f for mm, f in pairs if mm == m] for m in modalities}
    model = DynamicTwinModel(
        saved,
        modalities,
        features=features,
        latent_dim=int(cfg["latent_dim"]),
        agents=cfg["agents"],
        transforms=cfg["transforms"],
        dynamics=cfg["dynamics"],
        prior_effects=cfg["prior_effects"],
        agent_exposure=cfg["agent_exposure"],
        covariates=cfg["covariates"],
        static_model=static_model,
        timescales=tuple(cfg["timescales"]) if cfg["timescales"] else None,
        time_unit=cfg.get("time_unit"),
        insert_events=cfg["insert_events"],
        standardize=cfg["standardize"],
        neural=cfg["neural"],
        effect_prior_sd=cfg.get("effect_prior_sd", 1.0),
        structure=cfg.get("structure", "generic"),
        device=device,
        dtype=_DTYPES[cfg.get("dtype", "float64")],
        num_threads=num_threads,
    )
    model.transform = FeatureTransform.from_dict(meta["transform"])
    model.context = ContextEncoding.from_dict(meta["context"]) if meta.get("context") else None
    model.static_dim = static_dim
    model.agent_names = dict(meta.get("agent_names") or {})
    if meta.get("forecast_scale") is not None:
        model.forecast_scale = np.asarray(meta["forecast_scale"], dtype=float)
    if static_dim and int(getattr(static_model, "latent_dim", -1)) != static_dim:
        raise ValueError(
            f"the static model has latent_dim {getattr(static_model, 'latent_dim', None)}, "
            f"the saved dynamic model expects {static_dim}"
        )
    module = model._build_module(model.timescales or (1.0, 100.0))
    state = read_weights(weights_path)
    if "dynamics.A_free" in state and "dynamics.L_free" in state:
        _match_free_parametrisation(module, state)
    load_weights_into(module, state, weights_path)
    for p in module.parameters():
        p.requires_grad_(False)
    attach_loaded_module(model, module, meta, DynamicTrainingConfig, DynamicTrainingHistory)
    return model


def _match_free_parametrisation(module: Any, state: dict) -> None:
    """Rebuild the dynamics of a model made with ``from_matrices`` (free drift and diffusion)."""
    from twin.dynamics import LinearGaussianDynamics

    A = state["dynamics.A_free"]
    L = state["dynamics.L_free"]
    dyn = LinearGaussianDynamics.from_matrices(
        A.to(module.linear.A.dtype), state["dynamics.B"], state["dynamics.b"], L @ L.mT
    )
    module.dynamics = dyn
