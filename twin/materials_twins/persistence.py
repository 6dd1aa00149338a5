"""Save and load a fitted :class:`~twin.materials_twins.PropertyTwinModel` without pickle.

A saved property twin is a folder holding ``model.json`` (format
``twin.PropertyTwinModel``: version, schema and hash, inputs and outputs, the network
specs, the process graph, the derived-feature set by name, the training inputs and
their statistics, each member's weights checksum) and one saved
:class:`~twin.model.twin_model.TwinModel` per ensemble member in ``member_<k>/``.
Writing follows :mod:`twin.model.ensemble_persistence`: an existing twin is replaced
only when asked, every file is written atomically and ``model.json`` last.

Two things are code, not data, and are handled by name:

* **derived features** (formulas): a known set (``"concrete"``:
  :data:`~twin.materials_twins.derived.CONCRETE_DERIVED`) is restored by name; a
  custom set must be given again to :func:`load_property_twin` (``derived=``), and its
  feature names must match the saved ones;
* **a regression mean** (``mean_model``: scikit-learn estimators) cannot be stored
  without pickle, so such a twin is refused at save time with that reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from twin.cohort import CohortSchema
from twin.materials.graph import ProcessGraph
from twin.materials_twins.derived import CONCRETE_DERIVED, DerivedFeatures
from twin.model import ModalitySpec
from twin.model.ensemble_persistence import load_members, member_folder, save_members
from twin.model.model_folder import (
    METADATA_FILE,
    metadata_header,
    read_model_metadata,
    write_metadata,
)

__all__ = ["KNOWN_DERIVED", "load_property_twin", "save_property_twin"]

FORMAT = "twin.PropertyTwinModel"
FORMAT_VERSION = 1

#: Derived-feature sets restored by name.
KNOWN_DERIVED: dict[str, DerivedFeatures] = {"concrete": CONCRETE_DERIVED}


def _derived_name(derived: DerivedFeatures) -> str | None:
    """The saved name of a derived set: ``""`` for none, a key of :data:`KNOWN_DERIVED`,
    or ``None`` for a custom set."""
    if not len(derived):
        return ""
    for name, known in KNOWN_DERIVED.items():
        if derived is known:
            return name
    return None


def _frame_to_json(frame: pd.DataFrame) -> dict:
    return {"index": frame.index.astype(str).tolist(), "columns": frame.to_dict(orient="list")}


def _frame_from_json(d: dict, index_name: str | None) -> pd.DataFrame:
    return pd.DataFrame(d["columns"], index=pd.Index(d["index"], name=index_name))


def save_property_twin(model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a fitted property twin into the folder ``path``; see the module docstring."""
    if model.mean_model is not None:
        raise ValueError(
            "a property twin on a regression mean (mean_model) holds scikit-learn estimators, "
            "which twin does not store (no pickle); save the twin without a mean_model, or "
            "refit it when needed"
        )
    if not model.is_fitted:
        raise RuntimeError("the property twin is not fitted; call fit() before save()")
    folder = Path(path)
    checksums = save_members(model.members, folder, overwrite)
    derived = _derived_name(model.derived)
    meta = {
        **metadata_header(FORMAT, FORMAT_VERSION, model.schema),
        "inputs": model.inputs,
        "outputs": model.outputs,
        "latent_dim": model.latent_dim,
        "conditional": model.conditional,
        "specs": {m: s.to_dict() for m, s in model.specs.items()},
        "default_spec": model.default_spec.to_dict(),
        "derived": derived,
        "derived_features": model.derived.names,
        "graph": None if model.graph is None else model.graph.to_dict(),
        "n_members": model.n_members,
        "members": [member_folder(".", k).name for k in range(model.n_members)],
        "members_weights_sha256": checksums,
        "members_schema_hash": model.members[0].schema.hash(),
        "training_inputs": _frame_to_json(model.training_inputs),
        "input_stats": _frame_to_json(model.input_stats),
    }
    write_metadata(folder, meta, overwrite=overwrite)
    return folder


def load_property_twin(
    path: str | os.PathLike,
    *,
    derived: DerivedFeatures | None = None,
    device: str | torch.device = "auto",
    num_threads: int | None = 1,
):
    """Read a property twin written by :func:`save_property_twin`.

    Parameters
    ----------
    path
        The saved folder.
    derived
        The derived features of a twin saved with a custom set (formulas are code and
        are not stored); must have the saved feature names.  Not needed for none or a
        set of :data:`KNOWN_DERIVED`.
    device, num_threads
        As for :class:`~twin.materials_twins.PropertyTwinModel`.
    """
    from twin.materials_twins.property_twin import PropertyTwinModel

    meta = read_model_metadata(
        path, FORMAT, FORMAT_VERSION, "; a TwinModel loads with twin.TwinModel.load"
    )
    where = Path(path) / METADATA_FILE
    saved_names = list(meta["derived_features"])
    if meta["derived"] is None or derived is not None:
        if derived is None:
            raise ValueError(
                f"{where}: the twin was saved with custom derived features {saved_names}, "
                "whose formulas are code; pass them again: load(path, derived=...)"
            )
        if list(derived.names) != saved_names:
            raise ValueError(
                f"{where}: derived features {list(derived.names)} given, the twin was saved "
                f"with {saved_names}"
            )
    elif meta["derived"] == "":
        derived = DerivedFeatures()
    elif meta["derived"] in KNOWN_DERIVED:
        derived = KNOWN_DERIVED[meta["derived"]]
    else:
        raise ValueError(
            f"{where}: unknown derived-feature set {meta['derived']!r}; known: "
            f"{sorted(KNOWN_DERIVED)}"
        )
    model = PropertyTwinModel(
        meta["inputs"],
        meta["outputs"],
        latent_dim=meta["latent_dim"],
        specs={m: ModalitySpec.from_dict(s) for m, s in meta["specs"].items()},
        default_spec=ModalitySpec.from_dict(meta["default_spec"]),
        derived=derived,
        graph=None if meta["graph"] is None else ProcessGraph.from_dict(meta["graph"]),
        conditional=meta["conditional"],
        n_members=meta["n_members"],
        device=device,
        num_threads=num_threads,
    )
    model.schema = CohortSchema.from_dict(meta["schema"])
    members_meta = {**meta, "schema_hash": meta["members_schema_hash"]}
    model.members = load_members(path, members_meta, device, num_threads)
    model.training_inputs = _frame_from_json(meta["training_inputs"], "individual")
    model.input_stats = _frame_from_json(meta["input_stats"], None)
    return model
