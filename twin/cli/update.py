"""``twin update``: keep longitudinal twins up to date as new records arrive."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from twin.cli.messages import EXIT_BAD_INPUT, EXIT_REFUSED, fail, plain, print_warnings


def update(
    model: Path = typer.Argument(..., help="Folder of a saved DynamicTwinModel."),
    input: Path = typer.Argument(
        ...,
        help="Twins file (.nc) written by an earlier 'twin update', or a cohort file "
        "(.nc) to instantiate the twins from.",
    ),
    new: list[Path] = typer.Argument(
        None,
        help="Cohort files with new records (e.g. 'twin ingest' of the latest FHIR "
        "export), applied in order. None: save the twins as they are.",
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Twins file to write (.nc)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUTPUT if it exists (it may be INPUT itself)."
    ),
) -> None:
    """Refine the twins in INPUT with the records in NEW by exact filtering; write them to OUTPUT.

    The model is not retrained: each twin's posterior moves on from its last
    observation with the readings after it (earlier ones are taken as known, so a
    full re-export is fine). A new export read on its own is put on the twins' calendar.
    Individuals of NEW that are not twins in INPUT are refused; twins absent from
    NEW are unchanged; new patients are refused (instantiate them from a cohort of
    their own records). Forecast or simulate the result with 'twin forecast MODEL
    OUTPUT' or 'twin simulate MODEL OUTPUT'.
    """
    import warnings

    from twin.cli.twins_io import load_twins
    from twin.cohort import Cohort
    from twin.dynamic_twins_file import is_twins_file

    err = Console(stderr=True, soft_wrap=True)
    if output.exists() and not overwrite:
        raise fail(f"{output} exists; pass --overwrite to replace it", EXIT_REFUSED, err)
    new = list(new or [])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            twins = load_twins(model, input)
            before = twins.history.n_observations
            for path in new:
                if is_twins_file(path):
                    raise ValueError(
                        f"{path} is a twins file; new records come as cohort files "
                        "('twin ingest'), and twins are read from INPUT"
                    )
                try:
                    twins = twins.update(Cohort.load(path))
                except (ValueError, KeyError) as exc:  # name the file of the new records
                    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                    raise ValueError(f"{path}: {text}") from exc
        print_warnings([w for w in caught if issubclass(w.category, UserWarning)], err)
        twins.save(output, overwrite=overwrite)
    except FileExistsError as exc:  # the output appeared meanwhile
        raise fail(exc, EXIT_REFUSED, err) from exc
    except (OSError, ValueError, KeyError) as exc:
        raise fail(exc, EXIT_BAD_INPUT, err) from exc
    added = twins.history.n_observations - before
    out = Console(soft_wrap=True)
    out.print(plain(twins))
    files = f" from {len(new)} file(s)" if new else ""
    out.print(plain(f"{added} new observations{files}; wrote {output}"))
