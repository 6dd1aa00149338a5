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

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from twin._util.atomic import atomic_path, write_text_atomic
from twin.cohort import CohortSchema
from twin.model.context_encoding import ContextEncoding
from twin.model.dynamic_training import DynamicTrainingConfig, DynamicTrainingHistory
from twin.model.feature_transform import FeatureTransform

FORMAT = "twin.DynamicTwinModel"
FORMAT_VERSION = 1
METADATA_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _twin_version() -> str:
    try:
        from importlib.metadata import version

        return version("twin")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "unknown"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_dynamic_model(model: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``model`` into the folder ``path``; see the module docstring."""
    module = model._require_fitted()
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    for name in (METADATA_FILE, WEIGHTS_FILE):
        if (folder / name).exists() and not overwrite:
            raise FileExistsError(
                f"{folder / name} exists; pass overwrite=True (CLI: --overwrite) to replace it"
            )
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE, overwrite=overwrite) as tmp:
        torch.save(state, tmp)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "twin_version": _twin_version(),
        "schema": model.schema.to_dict(),
        "schema_hash": model.schema.hash(),
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
        "weights_sha256": _sha256(folder / WEIGHTS_FILE),
    }
    write_text_atomic(
        folder / METADATA_FILE,
        json.dumps(meta, indent=1, default=_json_default),
        overwrite=overwrite,
    )
    return folder


def _json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_dynamic_metadata(path: str | os.PathLike) -> dict:
    """The checked ``model.json`` of a saved dynamic model."""
    folder = Path(path)
    meta_path = folder / METADATA_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"no saved twin model in {folder} (missing {METADATA_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{meta_path}: not a {FORMAT} file (format {meta.get('format')!r}); "
            "a static TwinModel loads with twin.TwinModel.load"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: model format version {meta.get('format_version')}, this twin reads "
            f"version {FORMAT_VERSION}; re-train or use the twin version that wrote it "
            f"({meta.get('twin_version')})"
        )
    schema = CohortSchema.from_dict(meta["schema"])
    if schema.hash() != meta.get("schema_hash"):
        raise ValueError(
            f"{meta_path}: the stored schema does not match its hash "
            f"({schema.hash()} vs {meta.get('schema_hash')}); the file was edited or damaged"
        )
    return meta


def load_dynamic_model(
    path: str | os.PathLike,
    schema: CohortSchema | None = None,
    static_model: Any = None,
    device: str | torch.device = "auto",
    num_threads: int | None = 1,
):
    """Read a model written by :func:`save_dynamic_model`."""
    from twin.model.dynamic_model import DynamicTwinModel, _restrict

    folder = Path(path)
    meta = read_dynamic_metadata(folder)
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
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.exists():
        raise FileNotFoundError(f"{weights_path} is missing")
    if _sha256(weights_path) != meta.get("weights_sha256"):
        raise ValueError(
            f"{weights_path} is not the weights file {METADATA_FILE} was written with "
            "(checksum differs)"
        )
    static_dim = int(meta.get("static_dim") or 0)
    if static_dim and static_model is None:
        raise ValueError(
            f"{folder}: the model was trained with a static model (latent_dim {static_dim}); "
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
    if static_dim and int(getattr(static_model, "latent_dim", -1)) != static_dim:
        raise ValueError(
            f"the static model has latent_dim {getattr(static_model, 'latent_dim', None)}, "
            f"the saved dynamic model expects {static_dim}"
        )
    module = model._build_module(model.timescales or (1.0, 100.0))
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    if "dynamics.A_free" in state and "dynamics.L_free" in state:
        _match_free_parametrisation(module, state)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and expected[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{weights_path}: weights do not fit the model described in {METADATA_FILE} "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}, shape {shapes[:5]})"
        )
    module.load_state_dict(state)
    module.to(model.device).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    model.module = module
    if meta.get("training"):
        model.training_config = DynamicTrainingConfig.from_dict(meta["training"])
    if meta.get("history"):
        model.history = DynamicTrainingHistory.from_dict(meta["history"])
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
