"""Printing for the command line: user text is shown as is, never read as rich markup.

Feature names such as ``33914-3[mL/min]`` or a scenario called ``arm[mg/dl]`` would
otherwise lose their brackets, which rich takes for style tags.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import typer
from rich.console import Console
from rich.text import Text

#: Exit status when the input cannot be read or is invalid (missing or malformed file,
#: a scenario naming an unknown agent, ...).
EXIT_BAD_INPUT = 1
#: Exit status when the command refuses to run as asked (an output that exists without
#: ``--overwrite``); also typer's status for a wrong command line.
EXIT_REFUSED = 2


def plain(message: object) -> Text:
    """``str(message)`` as rich text without markup (brackets kept)."""
    return Text(str(message))


def print_error(message: object, console: Console | None = None) -> None:
    """Print ``error: <message>`` to standard error (or ``console``), brackets kept; a
    ``KeyError`` shows its text, not its quoted repr."""
    console = console or Console(stderr=True, soft_wrap=True)
    if isinstance(message, KeyError) and len(message.args) == 1:
        message = message.args[0]  # str(KeyError) would quote the whole text
    console.print(Text.assemble(("error: ", "red"), str(message)))


def fail(message: object, status: int, console: Console | None = None) -> typer.Exit:
    """Print ``message`` as an error and return the :class:`typer.Exit` to raise."""
    print_error(message, console)
    return typer.Exit(status)


def print_warnings(records: Iterable[warnings.WarningMessage], console: Console) -> None:
    """Print each recorded warning as ``warning: <message>`` to ``console``, brackets kept."""
    for w in records:
        console.print(plain(f"warning: {w.message}"))
