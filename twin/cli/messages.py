"""Printing for the command line: user text is shown as is, never read as rich markup.

Feature names such as ``33914-3[mL/min]`` or a scenario called ``arm[mg/dl]`` would
otherwise lose their brackets, which rich takes for style tags.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text


def plain(message: object) -> Text:
    """``str(message)`` as rich text without markup (brackets kept)."""
    return Text(str(message))


def print_error(message: object, console: Console | None = None) -> None:
    """Print ``error: <message>`` to standard error (or ``console``), brackets kept."""
    console = console or Console(stderr=True, soft_wrap=True)
    console.print(Text.assemble(("error: ", "red"), str(message)))
