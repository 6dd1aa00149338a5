"""Twin forecasts as a FHIR R4 Bundle of predicted Observations.

Each finite forecast of a feature, for one individual at one calendar time, becomes an
``Observation`` that says plainly it was not measured:

* ``status: preliminary`` and ``method.text`` naming the twin forecast;
* ``code`` from the feature's terminology (system, code, display: a LOINC code read
  from FHIR goes back out as the same LOINC code);
* ``valueQuantity``: the posterior predictive mean, in the feature's UCUM unit;
* ``referenceRange``: the central predictive interval (``low``/``high``) with a text
  saying so (FHIR has no element for a prediction interval; this is the one every
  viewer shows), and the predictive sd in a ``note``;
* ``subject``: ``Patient/<individual id>``; ``effectiveDateTime``: the forecast date.

Forecast entries that are NaN (before an individual's first observation) or after a
recorded death (also from a forecast made with ``after_death="keep"``) are left out,
and so is the ``entry`` list when nothing is left.
Resource ids are UUIDv5 of (individual, feature, date to the second), so exporting the
same forecast twice gives the same Bundle, and a date asked twice gives one entry.
Values keep 8 significant digits.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pandas as pd
import xarray as xr

from twin._util.atomic import write_bytes_atomic

if TYPE_CHECKING:
    from twin.cohort import FeatureSchema
    from twin.dynamic_twins import DynamicTwins

__all__ = ["forecast_bundle", "write_bundle"]

UCUM = "http://unitsofmeasure.org"
_NAMESPACE = uuid.UUID("5b7c1c9e-4d0a-4a53-9f57-1d1f3e7a2c10")


def _alive(twins: DynamicTwins, ids: np.ndarray, forecast: xr.Dataset) -> np.ndarray:
    """``(individual, time)``: False at forecast times after the twin's recorded death."""
    if "t" not in forecast.coords:
        return np.ones((len(ids), forecast.sizes["time"]), dtype=bool)
    pos = pd.Index(twins.individuals.astype(str)).get_indexer(ids)
    cutoff = np.where(pos >= 0, twins.death_cutoff[pos], np.nan)
    t = forecast["t"].transpose("individual", "time").values
    return ~(t > cutoff[:, None])


def forecast_bundle(
    twins: DynamicTwins, forecast: xr.Dataset, *, level: float = 0.9, validate: bool = True
) -> dict:
    """A FHIR R4 ``collection`` Bundle of the forecast's predicted Observations.

    Parameters
    ----------
    twins
        The twins the forecast came from (for the features' terminology and units).
    forecast
        Output of :meth:`DynamicTwins.forecast` on a calendar cohort (coordinate
        ``date``), holding the quantiles of the ``level`` interval.
    level
        Central predictive interval written as ``referenceRange`` (default 90 %:
        ``<f>_q05`` and ``<f>_q95``).
    validate
        Check the Bundle with the ``fhir.resources`` R4B model before returning it.

    Returns
    -------
    dict
        The Bundle as JSON-ready Python objects (write it with :func:`write_bundle`).

    Raises
    ------
    ValueError
        The forecast has no calendar dates, lacks the interval's quantiles, or names
        features the twins' model does not have.
    """
    from twin.dynamic_twins import quantile_name

    if "date" not in forecast.coords:
        raise ValueError(
            "the forecast has no calendar dates (coordinate 'date'); FHIR Observations need "
            "them: forecast twins of a cohort with a calendar (e.g. read with twin.read_fhir)"
        )
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    lo_name, hi_name = quantile_name((1 - level) / 2), quantile_name((1 + level) / 2)
    info = twins.model.feature_schemas
    names = [f for f in twins.feature_names if f in forecast.data_vars]
    if not names:
        raise ValueError(
            f"the forecast holds none of the twins' features {twins.feature_names[:5]}"
        )
    missing = [f"{f}_{q}" for f in names for q in (lo_name, hi_name, "sd")]
    missing = [v for v in missing if v not in forecast.data_vars]
    if missing:
        raise ValueError(
            f"the forecast lacks {missing[:3]} for a {level:.0%} interval: ask forecast() for "
            f"quantiles=({(1 - level) / 2:g}, 0.5, {(1 + level) / 2:g})"
        )
    dates = pd.DatetimeIndex(np.asarray(forecast["date"].values).ravel())
    stamps = np.asarray(
        [d.strftime("%Y-%m-%dT%H:%M:%SZ") if not pd.isna(d) else "" for d in dates], dtype=object
    ).reshape(forecast["date"].shape)
    ids = np.asarray(forecast["individual"].values).astype(str)
    alive = _alive(twins, ids, forecast)
    entries, seen = [], set()
    for name in names:
        mean = forecast[name].transpose("individual", "time").values
        sd = forecast[f"{name}_sd"].transpose("individual", "time").values
        lo = forecast[f"{name}_{lo_name}"].transpose("individual", "time").values
        hi = forecast[f"{name}_{hi_name}"].transpose("individual", "time").values
        feature = info[name]
        keep = np.isfinite(mean) & np.isfinite(lo) & np.isfinite(hi) & (stamps != "") & alive
        for i, k in zip(*np.nonzero(keep), strict=True):
            obs = _observation(
                feature, ids[i], stamps[i, k], mean[i, k], sd[i, k], lo[i, k], hi[i, k], level
            )
            if obs["id"] in seen:  # the same date asked twice: one Observation (unique fullUrl)
                continue
            seen.add(obs["id"])
            entries.append({"fullUrl": f"urn:uuid:{obs['id']}", "resource": obs})
    bundle: dict = {"resourceType": "Bundle", "type": "collection"}
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = entries
    if validate:
        from fhir.resources.R4B.bundle import Bundle

        Bundle.model_validate(bundle)
    return bundle


def write_bundle(bundle: Mapping, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``bundle`` as JSON atomically; an existing file is kept unless ``overwrite``."""
    return write_bytes_atomic(path, orjson.dumps(bundle, option=orjson.OPT_INDENT_2), overwrite)


def _quantity(value: float, unit: str) -> dict:
    q: dict = {"value": float(f"{float(value):.8g}")}
    if unit:
        q.update(unit=unit, system=UCUM, code=unit)
    return q


def _observation(
    feature: FeatureSchema,
    individual: str,
    when: str,
    mean: float,
    sd: float,
    lo: float,
    hi: float,
    level: float,
) -> dict:
    coding = {"code": feature.code or feature.name}
    if feature.system:
        coding["system"] = feature.system
    if feature.display:
        coding["display"] = feature.display
    rid = uuid.uuid5(_NAMESPACE, f"{individual}|{feature.name}|{when}")
    return {
        "resourceType": "Observation",
        "id": str(rid),
        "status": "preliminary",
        "code": {"coding": [coding], "text": feature.display or feature.name},
        "subject": {"reference": f"Patient/{individual}"},
        "effectiveDateTime": when,
        "valueQuantity": _quantity(mean, feature.unit),
        "referenceRange": [
            {
                "low": _quantity(lo, feature.unit),
                "high": _quantity(hi, feature.unit),
                "text": f"{level:.0%} predictive interval of the twin forecast",
            }
        ],
        "method": {"text": "twin forecast: posterior predictive mean (not measured)"},
        "note": [{"text": f"Predicted by a twin model; predictive sd {float(sd):.4g}."}],
    }
