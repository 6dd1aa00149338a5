"""Save and load :class:`~twin.dynamic_twins.DynamicTwins`: a twin's state between sessions.

A longitudinal twin is the population model plus, per individual, the posterior of the
latent state at its last observation, the observations it was conditioned on, its
interventions, reference time and recorded death.  Saving that state lets a twin be
instantiated once and then kept up to date with :meth:`DynamicTwins.update` as new
records arrive (a FHIR export of the last month, say), without reading the whole record
again.

The file is one NetCDF file (h5netcdf engine, written atomically) holding

* ``mean`` (individual, latent), ``cov`` (individual, latent, latent_col), ``time``;
* the initial-state prior (``prior_mean``, ``prior_cov``, ``prior_time``), kept for
  smoothing past times;
* ``history_times`` (individual, step), ``history_y`` / ``history_mask``
  (individual, step, feature), ``history_n_steps``: the standardised observations;
* ``reference_time`` and ``death_time`` per individual;
* the intervention table (``intervention_<column>`` on an ``intervention`` dimension);
* attributes: format name and version, twin version, and the fingerprint of the model
  the posteriors belong to (SHA-256 of its parameters and of the configuration that
  turns records into its inputs: features, standardisation, agents and their exposure,
  time unit).

Loading needs the model and refuses another one: a posterior is only meaningful under
the parameters that produced it.  Retraining the population model therefore means
instantiating the twins again from their records.  Recalibrating forecast intervals
(:meth:`DynamicTwinModel.calibrate_forecast`) does not change the fingerprint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import xarray as xr

from twin._util.atomic import atomic_path
from twin.cohort import INTERVENTION_COLUMNS
from twin.cohort.build import intervention_vars
from twin.dynamic_twins import DynamicTwins
from twin.model.dynamic_data import Sequences
from twin.model.model_folder import module_fingerprint, twin_version

if TYPE_CHECKING:
    from twin.model.dynamic_model import DynamicTwinModel

FORMAT = "twin.DynamicTwins"
FORMAT_VERSION = 1


def model_fingerprint(model: DynamicTwinModel) -> str:
    """Fingerprint of what a twin's posterior depends on in ``model`` (see module docstring)."""
    module = model._require_fitted()
    config = {
        "features": [list(p) for p in model.features],
        "transform": model.transform.to_dict(),
        "agents": list(model.agents or []),
        "agent_exposure": model.agent_exposure,
        "time_unit": model.time_unit,
        "timescales": list(model.timescales) if model.timescales else None,
        "insert_events": model.insert_events,
        "neural": model.neural,
        "context": model.context.to_dict() if model.context else None,
        "static_dim": model.static_dim,
    }
    return module_fingerprint(module, config)


def save_dynamic_twins(
    twins: DynamicTwins, path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Write ``twins`` to the NetCDF file ``path``; see the module docstring."""
    model = twins.model
    h = twins.history
    data = {
        "mean": (("individual", "latent"), _numpy(twins.mean)),
        "cov": (("individual", "latent", "latent_col"), _numpy(twins.cov)),
        "time": ("individual", twins.time),
        "prior_mean": (("individual", "latent"), _numpy(twins.prior_mean)),
        "prior_cov": (("individual", "latent", "latent_col"), _numpy(twins.prior_cov)),
        "prior_time": ("individual", twins.prior_time),
        "reference_time": ("individual", _datetimes(twins.reference_time)),
        "death_time": ("individual", twins.death_time),
        "history_times": (("individual", "step"), h.times.astype(np.float64)),
        "history_y": (("individual", "step", "feature"), h.y.astype(np.float64)),
        "history_mask": (("individual", "step", "feature"), h.mask.astype(np.int8)),
        "history_n_steps": ("individual", h.n_steps.astype(np.int64)),
    }
    ids = pd.Index([str(i) for i in twins.individuals])
    reference = pd.Series(_datetimes(twins.reference_time), index=ids)
    data.update(intervention_vars(twins.interventions, reference, ids))  # as a Cohort holds them
    ds = xr.Dataset(
        data,
        coords={
            "individual": np.asarray(ids, dtype=object),
            "feature": np.asarray(twins.feature_names, dtype=object),
        },
        attrs={
            "twin_format": FORMAT,
            "twin_format_version": FORMAT_VERSION,
            "twin_version": twin_version(),
            "model_fingerprint": model_fingerprint(model),
            "latent_dim": twins.latent_dim,
        },
    )
    with atomic_path(path, overwrite) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return Path(path)


def is_twins_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file written by :func:`save_dynamic_twins` (reads attributes only)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with xr.open_dataset(path, engine="h5netcdf") as opened:
            return opened.attrs.get("twin_format") == FORMAT
    except (OSError, ValueError):
        return False


def load_dynamic_twins(path: str | os.PathLike, model: DynamicTwinModel) -> DynamicTwins:
    """Read twins written by :func:`save_dynamic_twins`, under ``model``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Not a twins file (naming what it looks like), another format version, or twins
        of another model (different parameters, features or standardisation).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no twins file at {path}")
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder, not a twins file (a saved model? twins are single .nc "
            "files written by DynamicTwins.save or 'twin update')"
        )
    try:
        with xr.open_dataset(path, engine="h5netcdf") as opened:
            ds = opened.load()
    except OSError as exc:
        raise ValueError(f"{path}: not a readable NetCDF twins file ({exc})") from exc
    fmt = ds.attrs.get("twin_format")
    if fmt != FORMAT:
        looks = (
            "; it is a cohort file: instantiate twins from it with model.instantiate"
            if "twin_modalities" in ds.attrs
            else ""
        )
        raise ValueError(f"{path}: not a saved DynamicTwins file (format {fmt!r}){looks}")
    version = int(ds.attrs.get("twin_format_version", -1))
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: twins format version {version}, this twin reads {FORMAT_VERSION}"
        )
    expected = model_fingerprint(model)
    if ds.attrs.get("model_fingerprint") != expected:
        raise ValueError(
            f"{path}: these twins were made by another model (its parameters, features or "
            "standardisation differ from the one given); a posterior only holds under the "
            "model that made it, so instantiate the twins again from their records "
            "with this model"
        )
    features = [str(f) for f in ds["feature"].values]
    if features != list(model.feature_names):
        raise ValueError(
            f"{path}: features {features} differ from the model's {model.feature_names}"
        )
    kw = {"dtype": model.dtype, "device": model.device}
    history = Sequences(
        ds["history_times"].values.astype(np.float64),
        ds["history_y"].values.astype(np.float64),
        ds["history_mask"].values.astype(bool),
        ds["history_n_steps"].values.astype(np.int64),
    )
    table = pd.DataFrame(
        {
            c: np.array([str(v) for v in ds[f"intervention_{c}"].values], dtype=object)
            if kind == "str"
            else ds[f"intervention_{c}"].values
            for c, kind in INTERVENTION_COLUMNS.items()
        }
    )
    return DynamicTwins(
        model,
        individuals=np.asarray([str(i) for i in ds["individual"].values], dtype=object),
        time=ds["time"].values.astype(np.float64),
        mean=torch.as_tensor(ds["mean"].values, **kw),
        cov=torch.as_tensor(ds["cov"].values, **kw),
        history=history,
        prior_mean=torch.as_tensor(ds["prior_mean"].values, **kw),
        prior_cov=torch.as_tensor(ds["prior_cov"].values, **kw),
        prior_time=ds["prior_time"].values.astype(np.float64),
        interventions=table,
        reference_time=ds["reference_time"].values,
        death_time=ds["death_time"].values.astype(np.float64),
    )


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _datetimes(values) -> np.ndarray:
    return pd.to_datetime(pd.Series(np.asarray(values)), errors="coerce").to_numpy(
        dtype="datetime64[ns]"
    )
