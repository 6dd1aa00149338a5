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

import hashlib
import json
import os
from pathlib import Path

import torch

from twin._util.atomic import atomic_path, write_text_atomic
from twin.cohort import CohortSchema
from twin.model.covariates import CovariateEncoder
from twin.model.specs import ModalitySpec
from twin.model.training import TrainingConfig, TrainingHistory

FORMAT = "twin.TwinModel"
FORMAT_VERSION = 1
METADATA_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"


def _twin_version() -> str:
    try:
        from importlib.metadata import version

        return version("twin")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "unknown"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_model(model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``model`` into the folder ``path``; see the module docstring."""
    module = model._require_fitted()
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    for name in (METADATA_FILE, WEIGHTS_FILE):
        if (folder / name).exists() and not overwrite:
            raise FileExistsError(f"{folder / name} exists; pass overwrite=True to replace it")
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
        "latent_dim": model.latent_dim,
        "specs": {m: s.to_dict() for m, s in model.specs.items()},
        "covariates": model.covariate_encoder.to_dict(),
        "training": model.training_config.to_dict() if model.training_config else None,
        "history": model.history.to_dict() if model.history else None,
        "weights_sha256": _sha256(folder / WEIGHTS_FILE),
    }
    write_text_atomic(folder / METADATA_FILE, json.dumps(meta, indent=1), overwrite=overwrite)
    return folder


def read_metadata(path: str | os.PathLike) -> dict:
    """The checked ``model.json`` of a saved model."""
    folder = Path(path)
    meta_path = folder / METADATA_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"no saved twin model in {folder} (missing {METADATA_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: not a {FORMAT} file (format {meta.get('format')!r})")
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


def load_model(
    path: str | os.PathLike,
    schema: CohortSchema | None = None,
    device: str | torch.device = "auto",
    num_threads: int | None = 1,
):
    """Read a model written by :func:`save_model`."""
    from twin.model.twin_model import TwinModel

    folder = Path(path)
    meta = read_metadata(folder)
    saved = CohortSchema.from_dict(meta["schema"])
    if schema is not None:
        _check_schema(saved, schema)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.exists():
        raise FileNotFoundError(f"{weights_path} is missing")
    if _sha256(weights_path) != meta.get("weights_sha256"):
        raise ValueError(
            f"{weights_path} is not the weights file {METADATA_FILE} was written with "
            "(checksum differs)"
        )
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
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    missing, unexpected = _key_differences(module.state_dict(), state)
    if missing or unexpected:
        raise ValueError(
            f"{weights_path}: weights do not fit the model described in {METADATA_FILE} "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    module.load_state_dict(state)
    module.to(model.device).eval()
    model.module = module
    if meta.get("training"):
        model.training_config = TrainingConfig.from_dict(meta["training"])
    if meta.get("history"):
        model.history = TrainingHistory.from_dict(meta["history"])
    return model


def _key_differences(expected: dict, found: dict) -> tuple[list[str], list[str]]:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and expected[k].shape != found[k].shape]
    return missing + [f"{k} (shape)" for k in shapes], unexpected


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
