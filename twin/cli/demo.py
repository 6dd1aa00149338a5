"""``twin demo``: the main job on embedded demo data."""

from __future__ import annotations


def demo() -> None:
    """Run the main twin workflow on the demo data shipped with the package."""
    raise NotImplementedError
