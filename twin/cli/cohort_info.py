"""``twin info``: describe a saved cohort."""

from __future__ import annotations

from pathlib import Path

import typer

from twin.cli.messages import print_error


def info(path: Path = typer.Argument(..., help="A cohort file written by 'twin ingest'.")) -> None:
    """Print a summary of a saved cohort (individuals, modalities, interventions)."""
    from twin.cohort import Cohort

    try:
        cohort = Cohort.load(path)
    except (FileNotFoundError, ValueError) as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    print(cohort)
