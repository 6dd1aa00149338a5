"""Save and load a :class:`~twin.model.twin_model.TwinModel` without pickle.

A saved model is a folder with two files:

* ``weights.pt``: the module's ``state_dict`` (plain tensors only), read back with
  ``torch.load(weights_only=True)``;
* ``model.json``: format name and version, twin version, the schema (and its hash),
  latent dimension, modality specs, covariate encoding, training settings and history,
  and the SHA-256 of ``weights.pt``.

Each file is written atomically; an existing model is never replaced unless asked.
Loading refuses another format version, a schema whose hash does not match, weights
that are not the ones the metadata was written with, and (when a schema is given) a
schema that describes the model's modalities differently, naming what differs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from twin.cohort import CohortSchema
from twin.model.covariates import CovariateEncoder
from twin.model.model_folder import (
    attach_loaded_module,
    load_weights_into,
    metadata_header,
    read_model_metadata,
    read_weights,
    verified_weights_path,
    write_model_folder,
)
from twin.model.specs import ModalitySpec
from twin.model.training import TrainingConfig, TrainingHistory

FORMAT = "twin.TwinModel"
FORMAT_VERSION = 1


def save_model(model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``model`` into the folder ``path``; see the module docstring."""
    module = model._require_fitted()
    meta = {
        **metadata_header(FORMAT, FORMAT_VERSION, model.schema),
        "latent_dim": model.latent_dim,
        "specs": {m: s.to_dict() for m, s in model.specs.items()},
        "covariates": model.covariate_encoder.to_dict(),
        "training": model.training_config.to_dict() if model.training_config else None,
        "history": model.history.to_dict() if model.history else None,
    }
    return write_model_folder(path, module, meta, overwrite=overwrite)


def read_metadata(path: str | os.PathLike) -> dict:
    """The checked ``model.json`` of a saved model."""
    return read_model_metadata(
        path,
        FORMAT,
        FORMAT_VERSION,
        "; a DynamicTwinModel loads with twin.model.dynamic_model.DynamicTwinModel.load, "
        "a TwinEnsemble with twin.TwinEnsemble.load",
    )


def load_model(
    path: str | os.PathLike,
    schema: CohortSchema | None = None,
    device: str | torch.device = "auto",
    num_threads: int | None = 1,
):
    """Read a model written by :func:`save_model`."""
    from twin.model.twin_model import TwinModel

    meta = read_metadata(path)
    saved = CohortSchema.from_dict(meta["schema"])
    if schema is not None:
        _check_schema(saved, schema)
    weights_path = verified_weights_path(path, meta)
    model = TwinModel(
        saved,
        meta["latent_dim"],
        specs={m: ModalitySpec.from_dict(s) for m, s in meta["specs"].items()},
        covariates=saved.covariates,
        device=device,
        num_threads=num_threads,
    )
    model.covariate_encoder = CovariateEncoder.from_dict(meta["covariates"])
    module = model._build_module()
    load_weights_into(module, read_weights(weights_path), weights_path)
    attach_loaded_module(model, module, meta, TrainingConfig, TrainingHistory)
    return model


def _check_schema(saved: CohortSchema, given: CohortSchema) -> None:
    """Refuse ``given`` unless it describes each of the model's modalities identically."""
    missing = [m for m in saved.names if m not in given]
    problems = [f"modality {m!r} is missing from the given schema" for m in missing]
    shared = [m for m in saved.names if m in given]
    if shared:
        mine = CohortSchema(tuple(saved[m] for m in shared))
        theirs = CohortSchema(tuple(given[m] for m in shared))
        problems += mine.diff(theirs)
    absent_cov = [c for c in saved.covariates if given.covariates and c not in given.covariates]
    problems += [f"covariate {c!r} is missing from the given schema" for c in absent_cov]
    if problems:
        raise ValueError(
            "the saved model was trained on another schema (saved vs given): "
            + "; ".join(problems[:8])
        )
