"""The ``twin`` command line: one sub-command per module."""

from __future__ import annotations

import typer

from twin.cli.cohort_info import info
from twin.cli.demo import demo
from twin.cli.fit import fit
from twin.cli.forecast import forecast
from twin.cli.ingest import ingest
from twin.cli.simulate import simulate
from twin.cli.update import update

app = typer.Typer(
    name="twin",
    help="Probabilistic digital twins of patients and materials.",
    epilog="Exit status: 0 done; 1 unreadable or invalid input; "
    "2 refused (an output exists: pass --overwrite) or a wrong command line.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(demo)
app.command()(ingest)
app.command()(fit)
app.command()(forecast)
app.command()(info)
app.command()(simulate)
app.command()(update)

__all__ = ["app"]
