"""Save and load a :class:`~twin.model.ensemble.TwinEnsemble` without pickle.

A saved ensemble is a folder holding ``model.json`` (format ``twin.TwinEnsemble``:
version, schema and hash, number of members, the training seed, interval scale and
its calibration table, member options, and each member's weights checksum) and one
saved :class:`~twin.model.twin_model.TwinModel` per member in ``member_<k>/`` (see
:mod:`twin.model.persistence`).  An existing ensemble is never replaced unless asked.
When it is, its ``model.json`` is removed first and members beyond the new count are
deleted; the members are then written and the new ``model.json`` last, each file
atomically, so an interrupted save leaves no loadable ensemble.  Loading checks every
member's schema hash and weights checksum against the ensemble's ``model.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import torch

from twin.cohort import CohortSchema
from twin.model.model_folder import (
    METADATA_FILE,
    metadata_header,
    read_model_metadata,
    write_metadata,
)
from twin.model.persistence import _check_schema, load_model, save_model
from twin.model.specs import ModalitySpec

FORMAT = "twin.TwinEnsemble"
FORMAT_VERSION = 1


def member_folder(path: str | os.PathLike, k: int) -> Path:
    """The folder of member ``k`` inside an ensemble folder."""
    return Path(path) / f"member_{k}"


def _is_member(path: Path, n_members: int) -> bool:
    """Whether ``path`` is ``member_<k>`` for some ``k < n_members``."""
    return path.name in {member_folder(".", k).name for k in range(n_members)}


def save_members(members, folder: Path, overwrite: bool, hint: str = "") -> list[str]:
    """Write each member into ``member_<k>/`` of ``folder``; returns their weights checksums.

    A ``folder`` that is a file, or that holds a ``model.json`` when ``overwrite`` is
    false, is refused (``hint`` is added to that message).  Otherwise an existing
    ``model.json`` is removed first (the old model stops loading now) and stale member
    folders are deleted; the caller writes the new ``model.json`` last.
    """
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    if (folder / METADATA_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"{folder / METADATA_FILE} exists; pass overwrite=True{hint} to replace it"
        )
    if (folder / METADATA_FILE).exists():
        (folder / METADATA_FILE).unlink()
    stale = [p for p in folder.glob("member_*") if p.is_dir() and not _is_member(p, len(members))]
    for path in stale:
        shutil.rmtree(path)
    for k, member in enumerate(members):
        save_model(member, member_folder(folder, k), overwrite=overwrite)
    return [
        json.loads((member_folder(folder, k) / METADATA_FILE).read_text())["weights_sha256"]
        for k in range(len(members))
    ]


def load_members(
    folder: str | os.PathLike, meta: dict, device: str | torch.device, num_threads: int | None
) -> list:
    """The members listed in ``meta`` (``members``, ``members_weights_sha256``,
    ``n_members``, ``schema_hash``), each checked against its checksum and the schema hash."""
    names, checksums = meta["members"], meta["members_weights_sha256"]
    if not len(names) == len(checksums) == meta["n_members"]:
        raise ValueError(
            f"{Path(folder) / METADATA_FILE}: lists {len(names)} members and {len(checksums)} "
            f"checksums, n_members is {meta['n_members']}"
        )
    members = []
    for name, checksum in zip(names, checksums, strict=True):
        where = Path(folder) / name
        member = load_model(where, device=device, num_threads=num_threads)
        if member.schema.hash() != meta["schema_hash"]:
            raise ValueError(
                f"{where}: member schema hash {member.schema.hash()} differs from "
                f"the model's {meta['schema_hash']} in {Path(folder) / METADATA_FILE}"
            )
        if json.loads((where / METADATA_FILE).read_text())["weights_sha256"] != checksum:
            raise ValueError(
                f"{where}: not the member {Path(folder) / METADATA_FILE} was written with "
                "(weights checksum differs)"
            )
        members.append(member)
    return members


def save_ensemble(ensemble, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``ensemble`` into the folder ``path``; see the module docstring."""
    members = ensemble._require_fitted()
    folder = Path(path)
    checksums = save_members(members, folder, overwrite, hint=" (CLI: --overwrite)")
    first = members[0]
    options = {
        "specs": {m: s.to_dict() for m, s in first.specs.items()},
        "covariates": list(first.covariate_encoder.names),
    }
    calibration = None
    if ensemble.calibration is not None:
        calibration = ensemble.calibration.to_dict(orient="index")
    meta = {
        **metadata_header(FORMAT, FORMAT_VERSION, ensemble.schema),
        "latent_dim": ensemble.latent_dim,
        "n_members": ensemble.n_members,
        "members": [member_folder(".", k).name for k in range(ensemble.n_members)],
        "members_weights_sha256": checksums,
        "seed": ensemble.seed,
        "options": options,
        "level": ensemble.level,
        "interval_scale": dict(ensemble.interval_scale),
        "calibration": calibration,
    }
    write_metadata(folder, meta, overwrite=overwrite)
    return folder


def load_ensemble(
    path: str | os.PathLike,
    schema: CohortSchema | None = None,
    device: str | torch.device = "auto",
    num_threads: int | None = 1,
):
    """Read an ensemble written by :func:`save_ensemble`."""
    from twin.model.ensemble import TwinEnsemble

    meta = read_model_metadata(
        path, FORMAT, FORMAT_VERSION, "; a single model loads with twin.TwinModel.load"
    )
    saved = CohortSchema.from_dict(meta["schema"])
    if schema is not None:
        _check_schema(saved, schema)
    options = meta["options"]
    ensemble = TwinEnsemble(
        saved,
        meta["latent_dim"],
        n_members=meta["n_members"],
        specs={m: ModalitySpec.from_dict(s) for m, s in options["specs"].items()},
        covariates=options["covariates"],
        device=device,
        num_threads=num_threads,
    )
    ensemble.members = load_members(path, meta, device, num_threads)
    ensemble.level = float(meta["level"])
    ensemble.seed = meta.get("seed")
    ensemble.interval_scale = {m: float(v) for m, v in meta["interval_scale"].items()}
    if meta.get("calibration") is not None:
        table = pd.DataFrame.from_dict(meta["calibration"], orient="index")
        table.index.name = "modality"
        ensemble.calibration = table
    return ensemble
