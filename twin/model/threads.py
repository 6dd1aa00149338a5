"""Where and how a model computes: the device, a scoped limit on torch's intra-op CPU
threads, and seeded blocks.

The networks of a population model are small: on CPU one thread is usually fastest,
and several threads spinning on a shared or busy machine can slow training down by an
order of magnitude.  :func:`limited_threads` sets the number for a block and restores
the previous setting afterwards; :func:`seeded` also seeds torch's RNG for the block
and restores the caller's RNG state afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; anything else as ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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


@contextlib.contextmanager
def seeded(seed: int, device: torch.device, num_threads: int | None = None) -> Iterator[None]:
    """Run the block with torch seeded by ``seed`` (and ``num_threads`` threads), restoring
    the caller's RNG state (CPU, and ``device``'s when it is a CUDA device) afterwards."""
    devices = [device] if device.type == "cuda" else []
    with limited_threads(num_threads), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
