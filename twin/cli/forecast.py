"""``twin forecast``: posterior predictive forecasts of a cohort's longitudinal twins."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from twin.cli.messages import EXIT_BAD_INPUT, EXIT_REFUSED, fail, print_warnings


def forecast(
    model: Path = typer.Argument(..., help="Folder of a saved DynamicTwinModel."),
    input: Path = typer.Argument(
        ..., help="Cohort file (.nc) with the individuals' records, or a twins file (twin update)."
    ),
    days: list[float] = typer.Option(
        ..., "-d", "--days", help="Days after each twin's last observation (repeatable)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Forecast file to write (.nc)."),
    fhir: Path | None = typer.Option(
        None,
        "--fhir",
        help="Also write the forecasts as a FHIR R4 Bundle of preliminary Observations "
        "(.json; needs a cohort with calendar dates, e.g. from twin ingest).",
    ),
    level: float = typer.Option(0.9, "--level", help="Central predictive interval."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Forecast every modelled feature of every individual in INPUT, DAYS after its last record.

    Writes an xarray/NetCDF file (dims individual, time; per feature the mean, sd and
    the interval's quantiles); with ``--fhir`` also a FHIR Bundle. Times after a
    recorded death are left empty.
    """
    import warnings

    from twin.cli.twins_io import load_twins, write_dataset
    from twin.export import forecast_bundle, write_bundle

    err = Console(stderr=True, soft_wrap=True)
    for out in (output, fhir):
        if out is not None and out.exists() and not overwrite:
            raise fail(f"{out} exists; pass --overwrite to replace it", EXIT_REFUSED, err)
    try:
        if not 0 < level < 1:
            raise ValueError(f"--level must be in (0, 1), got {level}")
        twins = load_twins(model, input)
        quantiles = ((1 - level) / 2, 0.5, (1 + level) / 2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fc = twins.forecast(sorted(set(days)), relative_to="last", quantiles=quantiles)
        bundle = forecast_bundle(twins, fc, level=level) if fhir is not None else None
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise fail(exc, EXIT_BAD_INPUT, err) from exc
    print_warnings(caught, err)
    write_dataset(fc, output, overwrite)
    print(twins)
    print(
        f"forecast {len(twins)} individuals x {fc.sizes['time']} times x "
        f"{len(twins.feature_names)} features; wrote {output}"
    )
    if bundle is not None:
        write_bundle(bundle, fhir, overwrite=overwrite)
        print(f"wrote {fhir} ({len(bundle.get('entry', []))} predicted Observations)")
