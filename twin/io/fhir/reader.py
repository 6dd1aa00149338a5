"""``read_fhir`` / ``ingest``: FHIR R4 files -> :class:`~twin.cohort.Cohort` (+ report)."""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from twin.cohort import Cohort
from twin.io.fhir.assemble import build_cohort
from twin.io.fhir.extract import process_task
from twin.io.fhir.features import FeatureSelection
from twin.io.fhir.report import ATTR as REPORT_ATTR
from twin.io.fhir.report import IngestReport, SkippedEntry
from twin.io.fhir.rows import TaskResult
from twin.io.fhir.sources import Task, input_format, list_files, plan_tasks

#: Start method of the worker pool: "fork" on Linux (workers inherit the loaded models and
#: scripts need no ``if __name__ == "__main__"`` guard; the workers use no threads or
#: locks of the parent), "spawn" elsewhere (macOS, Windows: guard your script).
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


class FHIRIngestError(ValueError):
    """Nothing usable could be read; ``report`` says what was found and why it was skipped."""

    def __init__(self, message: str, report: IngestReport):
        super().__init__(message)
        self.report = report


def resolve_jobs(n_jobs: int) -> int:
    """Number of worker processes: ``-1`` means all cores available to this process."""
    if n_jobs == -1:
        try:
            return max(len(os.sched_getaffinity(0)), 1)
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive number of processes or -1, got {n_jobs}")
    return n_jobs


def validation_mode(validate: bool | str) -> str:
    """``True`` -> ``"cached"``, ``False`` -> ``"none"``; strings are checked as given."""
    if validate is True:
        return "cached"
    if validate is False:
        return "none"
    if validate in ("cached", "full", "none"):
        return str(validate)
    raise ValueError(f"validate must be True, False, 'cached' or 'full'; got {validate!r}")


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: parsed JSON is acyclic, refcounting frees it,
    and collections triggered by millions of new dicts cost ~40% of parse time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _work(task: Task, mode: str) -> TaskResult:
    with _no_gc():
        return process_task(task, mode)


def run_tasks(
    tasks: Iterable[Task], mode: str, n_jobs: int, on_done: Callable[[Task], None] | None = None
) -> Iterator[TaskResult]:
    """Results of all tasks in input order, in this process or in a pool of ``n_jobs``."""
    if n_jobs == 1:
        for task in tasks:
            result = _work(task, mode)
            if on_done:
                on_done(task)
            yield result
        return
    ctx = multiprocessing.get_context(START_METHOD)
    in_flight: deque = deque()
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
        for task in tasks:
            in_flight.append((task, pool.submit(_work, task, mode)))
            if len(in_flight) >= 4 * n_jobs:  # bounded: NDJSON chunks are not all in memory
                done, future = in_flight.popleft()
                yield future.result()
                if on_done:
                    on_done(done)
        while in_flight:
            done, future = in_flight.popleft()
            yield future.result()
            if on_done:
                on_done(done)


def _collect(result: TaskResult, report: IngestReport) -> None:
    report.entries += result.entries
    report.uncompressed_bytes += result.uncompressed_bytes
    report.compressed_bytes += result.compressed_bytes
    if result.file_error:
        report.files_failed += 1
    for rtype, n in result.seen.items():
        report.resources[rtype] = report.resources.get(rtype, 0) + n
    for rtype, n in result.unused.items():
        report.unused[rtype] = report.unused.get(rtype, 0) + n
    for item in result.skipped:
        report.skip(SkippedEntry(*item))
    for category, n in result.notes.items():
        report.notes[category] = report.notes.get(category, 0) + n


def ingest(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    features: FeatureSelection | None = None,
    conditions: FeatureSelection | None = None,
    n_jobs: int = 1,
    validate: bool | str = True,
    progress: bool | Callable[[Task], None] = False,
    max_details: int = 10_000,
    medication_days: float = 30.0,
) -> tuple[Cohort, IngestReport]:
    """Read FHIR R4 data into a cohort and say what happened.

    Parameters
    ----------
    path
        A Bundle or resource file (``.json`` / ``.json.gz``), a bulk-export NDJSON file
        (``.ndjson`` / ``.ndjson.gz``, one resource per line), or a folder of them
        (searched recursively), or a list of files and folders (read in that order,
        each file once).
    features
        Which observation codes become features (default: present for >= 5% of
        individuals); see :class:`FeatureSelection`.
    conditions
        The same for condition indicators (default: ``features.min_share``).
    n_jobs
        Worker processes (``-1``: all cores).  Files (and NDJSON chunks) are read,
        validated and mapped in parallel; the cohort is assembled in this process.
    validate
        ``True``/``"cached"``: every used resource is validated with its
        ``fhir.resources`` R4B model, memoising repeated shapes and elements (see
        :mod:`twin.io.fhir.validate`); ``"full"``: one plain ``model_validate`` per
        resource; ``False``: no validation.
    progress
        ``True`` shows a tqdm bar over files; a callable is called with each finished task.
    max_details
        How many skipped entries the report lists individually (counts are complete).
    medication_days
        How long a stopped medication order lasts when the record gives no end and the
        drug was never renewed (days).  Renewals of one drug become one course and a
        stopped order at the end of a chain lasts one more renewal interval; the
        counts of each assumption are in the report's notes
        (:mod:`twin.io.fhir.courses`).

    Returns
    -------
    (Cohort, IngestReport)
        The report is also stored in the cohort (attribute ``twin_ingest_report``).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    FHIRIngestError
        No Patient could be read (the error's ``report`` lists what went wrong).
    """
    start = time.perf_counter()
    if not (isinstance(medication_days, int | float) and 0 < medication_days < float("inf")):
        raise ValueError(
            f"medication_days must be a positive number of days, got {medication_days!r}"
        )
    features = features or FeatureSelection()
    conditions = conditions or FeatureSelection(min_share=features.min_share)
    mode = validation_mode(validate)
    files, ignored = list_files(path)
    jobs = resolve_jobs(n_jobs)
    if all(input_format(p) != "ndjson" for p in files):  # NDJSON files split into chunks
        jobs = min(jobs, max(len(files), 1))
    report = IngestReport(
        source=describe_source(path),
        files=len(files),
        files_ignored=[str(p) for p in ignored],
        validation=mode,
        n_jobs=jobs,
        max_details=max_details,
    )
    bar = None
    on_done = progress if callable(progress) else None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="file", desc="FHIR", leave=False)

        def on_done(task: Task) -> None:
            if task.final:
                bar.update(1)

    try:
        with _no_gc():
            results = []
            for result in run_tasks(plan_tasks(files), mode, jobs, on_done):
                _collect(result, report)
                results.append(result)
    finally:
        if bar is not None:
            bar.close()
    if not any(r.rows["patient"] for r in results):
        raise FHIRIngestError(_nothing_read(path, files, report), report)
    with _no_gc():
        cohort = build_cohort(results, report, features, conditions, medication_days)
    report.seconds = time.perf_counter() - start
    cohort.data.attrs[REPORT_ATTR] = json.dumps(report.to_dict(), default=str)
    return cohort, report


def describe_source(path: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """The input as the report names it: the path, or the listed paths joined by ``, ``."""
    if isinstance(path, str | os.PathLike):
        return str(path)
    return ", ".join(str(p) for p in path)


def _nothing_read(
    path: str | os.PathLike | Sequence[str | os.PathLike], files: list[Path], report: IngestReport
) -> str:
    if not files:
        return (
            f"{describe_source(path)}: no FHIR files found (looked for *.json, *.json.gz, *.ndjson, "
            "*.ndjson.gz, *.jsonl)"
        )
    problems = ", ".join(f"{k} {v}" for k, v in sorted(report.skipped_counts.items()))
    first = f"; first problem: {report.skipped[0]}" if report.skipped else ""
    return (
        f"{describe_source(path)}: no Patient resource could be read from {len(files)} file(s) "
        f"({report.entries} entries; skipped: {problems or 'none'}){first}"
    )


def read_fhir(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    features: FeatureSelection | None = None,
    conditions: FeatureSelection | None = None,
    n_jobs: int = 1,
    validate: bool | str = True,
    return_report: bool = False,
    progress: bool = False,
    medication_days: float = 30.0,
) -> Cohort | tuple[Cohort, IngestReport]:
    """Read FHIR R4 bundles / NDJSON into a :class:`~twin.cohort.Cohort`.

    Same parameters as :func:`ingest`; with ``return_report=True`` returns
    ``(cohort, report)``.  The report is always stored in the cohort: read it with
    ``IngestReport.from_dict(cohort.attr_json("twin_ingest_report"))``.

    Examples
    --------
    >>> cohort = twin.read_fhir("synthea_r4/", n_jobs=-1)  # doctest: +SKIP
    >>> cohort.features("observations")  # doctest: +SKIP
    """
    cohort, report = ingest(
        path,
        features=features,
        conditions=conditions,
        n_jobs=n_jobs,
        validate=validate,
        progress=progress,
        medication_days=medication_days,
    )
    return (cohort, report) if return_report else cohort
