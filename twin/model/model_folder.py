"""The on-disk folder shared by every saved model: ``model.json`` + ``weights.pt``.

:mod:`twin.model.persistence` (``TwinModel``) and :mod:`twin.model.dynamic_persistence`
(``DynamicTwinModel``) decide *what* goes into the metadata; this module does the
parts they share: refusing to replace files unless asked, writing the weights and the
JSON atomically, recording and checking the weights' SHA-256, sealing the metadata
with the SHA-256 of its content (so a hand-edited ``model.json`` is refused, not
loaded with settings the weights were not trained with), checking the format name,
format version and schema hash on read, and loading the weights without pickle
(``torch.load(weights_only=True)``) against the module they must fit.
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

METADATA_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
SEAL_FIELD = "metadata_sha256"


def twin_version() -> str:
    """The installed twin version ("unknown" when not installed as a distribution)."""
    try:
        from importlib.metadata import version

        return version("twin")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "unknown"


def metadata_header(fmt: str, version: int, schema: CohortSchema) -> dict:
    """The fields every ``model.json`` starts with: format, versions, schema and its hash."""
    return {
        "format": fmt,
        "format_version": version,
        "twin_version": twin_version(),
        "schema": schema.to_dict(),
        "schema_hash": schema.hash(),
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def metadata_digest(meta: dict) -> str:
    """SHA-256 of ``meta`` (as read back from JSON) without its seal, keys sorted."""
    content = {k: v for k, v in meta.items() if k != SEAL_FIELD}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def module_fingerprint(module: torch.nn.Module, extra: Any = None) -> str:
    """SHA-256 of a module's parameters and buffers (names, dtypes, shapes, values) and of
    the JSON of ``extra``: what results computed under the module (e.g. saved twins)
    record to know they belong to it.  Independent of the device."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(json.dumps(extra, sort_keys=True, default=plain_json_value).encode())
    return digest.hexdigest()


def plain_json_value(value: Any) -> Any:
    """``json.dumps`` default: NumPy scalars and arrays as the numbers and lists they hold
    (as JSON reads them back); anything else is refused."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_metadata(
    folder: Path, meta: dict, *, overwrite: bool = False, json_default: Any = None
) -> Path:
    """Write ``meta`` to ``folder/model.json`` atomically, sealed with its digest.

    The digest is taken of the JSON as it will be read back (after ``json_default``
    has converted what JSON cannot hold), so :func:`read_model_metadata` can check it.
    """
    plain = json.loads(json.dumps(meta, default=json_default))
    plain[SEAL_FIELD] = metadata_digest(plain)
    return write_text_atomic(
        folder / METADATA_FILE, json.dumps(plain, indent=1), overwrite=overwrite
    )


def write_model_folder(
    path: str | os.PathLike,
    module: torch.nn.Module,
    metadata: dict,
    *,
    overwrite: bool = False,
    json_default: Any = None,
) -> Path:
    """Write ``module``'s weights and ``metadata`` (plus ``weights_sha256``) to ``path``.

    Raises ``FileExistsError`` when ``path`` is a file, or when it already holds a
    model and ``overwrite`` is false.  Both files are written atomically.
    """
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
    meta = {**metadata, "weights_sha256": _sha256(folder / WEIGHTS_FILE)}
    write_metadata(folder, meta, overwrite=overwrite, json_default=json_default)
    return folder


def read_model_metadata(
    path: str | os.PathLike, fmt: str, version: int, other_hint: str = ""
) -> dict:
    """The ``model.json`` in ``path``, checked for format ``fmt``, ``version``, its seal
    and the schema hash.

    A file without a seal (written before twin sealed its metadata) is read with the
    schema-hash check only.

    ``other_hint`` is appended to the message when the folder holds another format
    (e.g. how to load that one instead).
    """
    meta_path = Path(path) / METADATA_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"no saved twin model in {Path(path)} (missing {METADATA_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc})") from exc
    if meta.get("format") != fmt:
        raise ValueError(
            f"{meta_path}: not a {fmt} file (format {meta.get('format')!r}){other_hint}"
        )
    if meta.get("format_version") != version:
        raise ValueError(
            f"{meta_path}: model format version {meta.get('format_version')}, this twin reads "
            f"version {version}; re-train or use the twin version that wrote it "
            f"({meta.get('twin_version')})"
        )
    schema = CohortSchema.from_dict(meta["schema"])
    if schema.hash() != meta.get("schema_hash"):
        raise ValueError(
            f"{meta_path}: the stored schema does not match its hash "
            f"({schema.hash()} vs {meta.get('schema_hash')}); the file was edited or damaged"
        )
    if SEAL_FIELD in meta and metadata_digest(meta) != meta[SEAL_FIELD]:
        raise ValueError(
            f"{meta_path}: the content does not match its {SEAL_FIELD}; the file was edited "
            "or damaged after it was written (settings such as the modality specs must "
            "match the saved weights: re-save the model from Python instead of editing it)"
        )
    return meta


def verified_weights_path(path: str | os.PathLike, meta: dict) -> Path:
    """``weights.pt`` in ``path``, after checking it is the file ``meta`` was written with."""
    weights_path = Path(path) / WEIGHTS_FILE
    if not weights_path.exists():
        raise FileNotFoundError(f"{weights_path} is missing")
    if _sha256(weights_path) != meta.get("weights_sha256"):
        raise ValueError(
            f"{weights_path} is not the weights file {METADATA_FILE} was written with "
            "(checksum differs)"
        )
    return weights_path


def read_weights(weights_path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``weights_path``, read without pickle."""
    return torch.load(weights_path, map_location="cpu", weights_only=True)


def load_weights_into(module: torch.nn.Module, state: dict, weights_path: Path) -> None:
    """``module.load_state_dict(state)``, refusing names or shapes that do not fit."""
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


def attach_loaded_module(
    model: Any, module: torch.nn.Module, meta: dict, config_cls: Any, history_cls: Any
) -> None:
    """Give ``model`` its loaded ``module`` and the training settings and history in ``meta``.

    The module goes to the model's device in eval mode; settings and history are read
    with ``config_cls.from_dict`` and ``history_cls.from_dict``.
    """
    module.to(model.device).eval()
    model.module = module
    if meta.get("training"):
        model.training_config = config_cls.from_dict(meta["training"])
    if meta.get("history"):
        model.history = history_cls.from_dict(meta["history"])
