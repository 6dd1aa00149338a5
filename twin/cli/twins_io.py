"""What ``twin simulate``, ``twin forecast`` and ``twin update`` share: twins from a saved
model and a cohort or twins file, and a result Dataset written atomically as NetCDF."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import xarray as xr

    from twin.dynamic_twins import DynamicTwins


def load_twins(model: Path, input_file: Path) -> DynamicTwins:
    """The twins under the DynamicTwinModel in ``model``: read from a twins file (written
    by ``twin update`` or ``DynamicTwins.save``) or instantiated from every individual of
    a cohort file."""
    from twin.cohort import Cohort
    from twin.dynamic_twins import DynamicTwins
    from twin.dynamic_twins_file import is_twins_file
    from twin.model.dynamic_model import DynamicTwinModel

    if is_twins_file(input_file):
        return DynamicTwins.load(input_file, DynamicTwinModel.load(model, device="auto"))
    cohort = Cohort.load(input_file)
    dyn = DynamicTwinModel.load(model, schema=cohort.schema, device="auto")
    return dyn.instantiate(cohort)


def write_dataset(ds: xr.Dataset, output: Path, overwrite: bool) -> None:
    """``ds`` to ``output`` (NetCDF, h5netcdf engine), atomically."""
    from twin._util.atomic import atomic_path

    with atomic_path(output, overwrite=overwrite) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
