"""``twin ingest``: FHIR R4 records to a cohort file (implemented with twin.io.fhir)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from twin.cli.messages import EXIT_BAD_INPUT, EXIT_REFUSED, fail


def ingest(
    paths: list[Path] = typer.Argument(
        ..., help="FHIR bundle files, NDJSON files, or folders of them (one or more)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Cohort file to write (.nc)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    jobs: int = typer.Option(1, "-j", "--jobs", help="Worker processes (-1: all cores)."),
    min_share: float = typer.Option(
        0.05, "--min-share", help="Keep codes observed in at least this share of individuals."
    ),
    full_validation: bool = typer.Option(
        False,
        "--full-validation",
        help="Validate each resource with a plain R4B model call "
        "instead of the (equivalent, faster) memoised validation.",
    ),
    medication_days: float = typer.Option(
        30.0,
        "--medication-days",
        help="Days a stopped medication order without an end lasts when it was never "
        "renewed (docs/fhir.md).",
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Read FHIR R4 records into a cohort and save it as NetCDF."""
    from twin.io.fhir import FeatureSelection, FHIRIngestError
    from twin.io.fhir import ingest as run_ingest

    err = Console(stderr=True, soft_wrap=True)
    if output.exists() and not overwrite:
        raise fail(f"{output} exists; pass --overwrite to replace it", EXIT_REFUSED, err)
    try:
        selection = FeatureSelection(min_share=min_share)
        cohort, report = run_ingest(
            paths[0] if len(paths) == 1 else paths,
            features=selection,
            n_jobs=jobs,
            validate="full" if full_validation else True,
            progress=not quiet,
            medication_days=medication_days,
        )
    except (FileNotFoundError, FHIRIngestError, ValueError) as exc:
        raise fail(exc, EXIT_BAD_INPUT, err) from exc
    cohort.save(output, overwrite=overwrite)
    print(report.summary())
    print(cohort)
    print(f"wrote {output}")
