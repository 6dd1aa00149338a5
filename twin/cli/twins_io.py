"""What ``twin simulate`` and ``twin forecast`` share: twins from a saved model and a
cohort file, and a result Dataset written atomically as NetCDF."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import xarray as xr

    from twin.dynamic_twins import DynamicTwins


def load_twins(model: Path, cohort_file: Path) -> DynamicTwins:
    """Twins of every individual in ``cohort_file`` under the DynamicTwinModel in ``model``."""
    from twin.cohort import Cohort
    from twin.model.dynamic_model import DynamicTwinModel

    cohort = Cohort.load(cohort_file)
    dyn = DynamicTwinModel.load(model, schema=cohort.schema, device="auto")
    return dyn.instantiate(cohort)


def write_dataset(ds: xr.Dataset, output: Path, overwrite: bool) -> None:
    """``ds`` to ``output`` (NetCDF, h5netcdf engine), atomically."""
    from twin._util.atomic import atomic_path

    with atomic_path(output, overwrite=overwrite) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
