"""``twin info``: describe a saved cohort."""

from __future__ import annotations

from pathlib import Path

import typer

from twin.cli.messages import EXIT_BAD_INPUT, fail


def info(path: Path = typer.Argument(..., help="A cohort file written by 'twin ingest'.")) -> None:
    """Print a summary of a saved cohort (individuals, modalities, interventions)."""
    from twin.cohort import Cohort

    try:
        cohort = Cohort.load(path)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(exc, EXIT_BAD_INPUT) from exc
    print(cohort)
