"""``twin ingest``: FHIR records to a cohort file (implemented with twin.io.fhir)."""

from __future__ import annotations

from pathlib import Path

import typer


def ingest(
    path: Path = typer.Argument(..., help="FHIR bundle file, NDJSON file, or a folder of them."),
    output: Path = typer.Option(..., "-o", "--output", help="Cohort file to write (.nc)."),
) -> None:
    """Read FHIR R4 records into a cohort and save it as NetCDF."""
    raise typer.Exit(1)
