"""Scoped limit on torch's intra-op CPU threads.

The networks of a population model are small: on CPU one thread is usually fastest,
and several threads spinning on a shared or busy machine can slow training down by an
order of magnitude.  :func:`limited_threads` sets the number for a block and restores
the previous setting afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def limited_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (``None``: leave it unchanged)."""
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"num_threads must be positive or None, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
