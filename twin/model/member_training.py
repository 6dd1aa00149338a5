"""Training the members of an ensemble, in turn or in parallel worker processes.

A member is a whole :meth:`TwinModel.fit <twin.model.twin_model.TwinModel.fit>`; the
members of an ensemble are independent, so on a CPU with several cores they can train
at the same time.  :func:`fit_members` runs each :class:`MemberJob` either in this
process, one after the other (``n_jobs=1``), or in a pool of worker processes.  A
worker trains its member with one torch thread and saves it with
:meth:`TwinModel.save` (weights without pickle, JSON metadata); this process loads it
back with :meth:`TwinModel.load`.  The seeds fix everything a fit draws, so a member
trained in a worker has the same weights as one trained here.

Workers start with ``fork`` where the platform has it and CUDA is not initialised
(Linux), else with ``spawn``, which imports the calling script again: a script
that trains in parallel on macOS or Windows needs the ``if __name__ == "__main__":``
guard.  On a GPU the members train in turn (one device, one process).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from twin.cohort import Cohort, CohortSchema
from twin.model.threads import resolve_device
from twin.model.twin_model import TwinModel

__all__ = ["MemberJob", "fit_members", "resolve_jobs"]


@dataclass(frozen=True)
class MemberJob:
    """One member to train: ``TwinModel(schema, latent_dim, **options).fit(cohort, **fit)``."""

    schema: CohortSchema
    latent_dim: int
    cohort: Cohort
    options: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)

    def build(self) -> TwinModel:
        return TwinModel(self.schema, self.latent_dim, **self.options)


def resolve_jobs(n_jobs: int | None, n_members: int) -> int:
    """Worker processes for ``n_members`` members: ``n_jobs`` (``-1`` or ``None``: one
    per CPU core), at most one per member, at least 1."""
    if n_jobs is None or n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    if isinstance(n_jobs, bool) or int(n_jobs) != n_jobs or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer or -1 (every core), got {n_jobs!r}")
    return max(1, min(int(n_jobs), int(n_members)))


def fit_members(
    jobs: Sequence[MemberJob], n_jobs: int | None = 1, progress: bool = True
) -> list[TwinModel]:
    """Train every job's member; returns them in job order.

    Parameters
    ----------
    jobs
        The members to train.
    n_jobs
        Worker processes (``-1``: one per CPU core); 1 trains in this process, in turn,
        each member with its own progress bar.
    progress
        With workers: one bar counting the trained members (the workers show none).
    """
    workers = resolve_jobs(n_jobs, len(jobs))
    on_gpu = any(resolve_device(job.options.get("device", "auto")).type != "cpu" for job in jobs)
    if workers > 1 and on_gpu:
        warnings.warn(
            "members on a GPU train in turn in this process (n_jobs applies to the CPU)",
            stacklevel=3,
        )
        workers = 1
    if workers == 1:
        return [_fit_here(job, progress) for job in jobs]
    return _fit_in_workers(jobs, workers, progress)


def _fit_here(job: MemberJob, progress: bool) -> TwinModel:
    model = job.build()
    model.fit(job.cohort, progress=progress, **job.fit)
    return model


def _train_and_save(job: MemberJob, path: str) -> str:
    """Worker: train one member with one torch thread and save it to ``path``."""
    torch.set_num_threads(1)
    model = job.build()
    model.fit(job.cohort, progress=False, **job.fit)
    model.save(path)
    return path


def _context() -> multiprocessing.context.BaseContext:
    if "fork" in multiprocessing.get_all_start_methods() and not torch.cuda.is_initialized():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _fit_in_workers(jobs: Sequence[MemberJob], workers: int, progress: bool) -> list[TwinModel]:
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory(prefix="twin-members-") as tmp:
        paths = [str(Path(tmp) / f"member_{k}") for k in range(len(jobs))]
        with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
            futures = [
                pool.submit(_train_and_save, job, p) for job, p in zip(jobs, paths, strict=True)
            ]
            bar = tqdm(total=len(jobs), desc="members", unit="model", disable=not progress)
            try:
                for future in as_completed(futures):
                    future.result()  # a member's error is raised here, naming its cause
                    bar.update(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            finally:
                bar.close()
        return [
            TwinModel.load(
                p,
                schema=job.schema,
                device=job.options.get("device", "auto"),
                num_threads=job.options.get("num_threads", 1),
            )
            for job, p in zip(jobs, paths, strict=True)
        ]
