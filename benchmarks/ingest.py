"""Benchmark: ``twin.read_fhir`` on all Synthea bundles vs whole-bundle R4B validation.

Runs, in one process and one go:

* the reference -- what validating the data with ``fhir.resources`` directly costs:
  read + gunzip + ``orjson.loads`` + ``Bundle.model_validate`` per bundle (R4B), on a
  seeded random subset of the bundles (``--reference-bundles``, default 30; ``0`` = all);
* ``twin.io.fhir.ingest`` on *all* bundles with ``n_jobs=1`` and ``n_jobs=-1`` (all
  cores), each starting with cold validation caches, validating every used resource;
* optionally (``--full``) ``ingest(..., validate="full")``: one plain ``model_validate``
  per used resource, to show what the memoised validation saves.

Writes ``benchmarks/results/ingest.json`` (bundles/s, MB/s compressed and uncompressed,
ratio to the reference, machine info, counts).  Usage::

    python benchmarks/ingest.py [--data DIR] [--reference-bundles N] [--full]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "fhir" / "synthea_r4"
RESULT = ROOT / "benchmarks" / "results" / "ingest.json"


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import fhir.resources
    import pydantic

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "fhir.resources": fhir.resources.__version__,
        "pydantic": pydantic.VERSION,
        "orjson": orjson.__version__,
    }


def rates(seconds: float, n: int, compressed: int, uncompressed: int) -> dict:
    return {
        "seconds": round(seconds, 3),
        "bundles": n,
        "bundles_per_s": round(n / seconds, 3),
        "s_per_bundle": round(seconds / n, 5),
        "mb_per_s_compressed": round(compressed / 1e6 / seconds, 3),
        "mb_per_s_uncompressed": round(uncompressed / 1e6 / seconds, 3),
    }


def reference(files: list[Path]) -> dict:
    """Whole-bundle validation with the R4B Bundle model, one bundle at a time."""
    from fhir.resources.R4B.bundle import Bundle

    compressed = uncompressed = 0
    validate_only = 0.0
    start = time.perf_counter()
    cpu = time.process_time()
    for path in files:
        raw = path.read_bytes()
        data = gzip.decompress(raw)
        doc = orjson.loads(data)
        t = time.perf_counter()
        Bundle.model_validate(doc)
        validate_only += time.perf_counter() - t
        compressed += len(raw)
        uncompressed += len(data)
    seconds = time.perf_counter() - start
    out = rates(seconds, len(files), compressed, uncompressed)
    out["cpu_seconds"] = round(time.process_time() - cpu, 3)
    out["validate_only_s_per_bundle"] = round(validate_only / len(files), 5)
    return out


def combine(parts: list[dict]) -> dict:
    """Rates over several timed parts of the reference."""
    seconds = sum(p["seconds"] for p in parts)
    n = sum(p["bundles"] for p in parts)
    comp = sum(p["mb_per_s_compressed"] * p["seconds"] for p in parts) * 1e6
    unc = sum(p["mb_per_s_uncompressed"] * p["seconds"] for p in parts) * 1e6
    out = rates(seconds, n, int(comp), int(unc))
    out["cpu_seconds"] = round(sum(p["cpu_seconds"] for p in parts), 3)
    out["validate_only_s_per_bundle"] = round(
        sum(p["validate_only_s_per_bundle"] * p["bundles"] for p in parts) / n, 5
    )
    out["parts"] = parts
    return out


def run_twin(folder: Path, n_jobs: int, validate: bool | str) -> tuple[dict, object]:
    from twin.io.fhir import ingest
    from twin.io.fhir.validate import clear_caches

    clear_caches()  # no memo carried over from an earlier run (workers fork from here)
    start = time.perf_counter()
    cpu = time.process_time()
    cohort, report = ingest(folder, n_jobs=n_jobs, validate=validate)
    seconds = time.perf_counter() - start
    out = rates(seconds, report.files, report.compressed_bytes, report.uncompressed_bytes)
    out["cpu_seconds_main_process"] = round(time.process_time() - cpu, 3)
    out["n_jobs"] = report.n_jobs
    out["validation"] = report.validation
    return out, (cohort, report)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--reference-bundles", type=int, default=30)
    parser.add_argument("--full", action="store_true", help="also time validate='full'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)

    files = sorted(args.data.glob("*.json.gz"))
    if not files:
        sys.exit(f"no *.json.gz bundles in {args.data}")
    subset = (
        files
        if args.reference_bundles <= 0
        else sorted(random.Random(args.seed).sample(files, min(args.reference_bundles, len(files))))
    )

    result: dict = {"benchmark": "FHIR ingestion", "data": str(args.data), "machine": machine()}
    # the reference is timed in two halves, before and after twin's runs, so that a change
    # of load on a shared machine biases neither side
    half = len(subset) // 2
    print(f"reference: Bundle.model_validate on {half} of {len(files)} bundles ...")
    parts = [reference(subset[:half])]

    runs = [(1, True), (-1, True)] + ([(1, "full")] if args.full else [])
    twin_runs = []
    last = None
    for n_jobs, validate in runs:
        print(f"twin.io.fhir.ingest(n_jobs={n_jobs}, validate={validate!r}) on {len(files)} ...")
        out, last = run_twin(args.data, n_jobs, validate)
        twin_runs.append(out)
        print(
            f"  {out['seconds']:.1f} s, {out['bundles_per_s']:.1f} bundles/s, "
            f"{out['mb_per_s_uncompressed']:.1f} MB/s"
        )
    print(f"reference: Bundle.model_validate on {len(subset) - half} more bundles ...")
    parts.append(reference(subset[half:]))
    ref = combine(parts)
    ref["note"] = (
        "read + gunzip + orjson.loads + fhir.resources.R4B Bundle.model_validate per bundle; "
        + (
            "all bundles"
            if len(subset) == len(files)
            else f"timed on a seeded random subset of {len(subset)} bundles (seed {args.seed}), "
            "half before and half after twin's runs, because the whole set takes minutes; "
            "rates are per bundle / per MB"
        )
    )
    result["reference"] = ref
    print(
        f"  reference: {ref['s_per_bundle']:.3f} s/bundle, {ref['mb_per_s_uncompressed']:.2f} MB/s"
    )
    for out in twin_runs:
        out["ratio_vs_reference"] = round(out["bundles_per_s"] / ref["bundles_per_s"], 2)
        if out["n_jobs"] == 1:  # one process: CPU time is robust to other users' load
            ref_cpu_rate = ref["bundles"] / ref["cpu_seconds"]
            own = out["bundles"] / out["cpu_seconds_main_process"]
            out["ratio_vs_reference_cpu_time"] = round(own / ref_cpu_rate, 2)
        print(
            f"  twin n_jobs={out['n_jobs']} ({out['validation']}): "
            f"{out['ratio_vs_reference']}x reference (wall)"
            + (
                f", {out['ratio_vs_reference_cpu_time']}x (CPU time)"
                if "ratio_vs_reference_cpu_time" in out
                else ""
            )
        )
    result["twin"] = twin_runs
    cohort, report = last
    result["counts"] = {
        "bundles": report.files,
        "entries": report.entries,
        "compressed_mb": round(report.compressed_bytes / 1e6, 2),
        "uncompressed_mb": round(report.uncompressed_bytes / 1e6, 2),
        "individuals": len(cohort),
        "visits": report.visits,
        "features": {m: len(v) for m, v in report.features.items()},
        "interventions": report.interventions,
        "references": report.references,
        "resources_used_and_validated": report.used,
        "resources_skipped_unvalidated": report.unused,
        "skipped_entries": report.skipped_counts,
        "used_with_assumption": report.notes,
        "unit_splits": report.unit_splits,
    }
    result["machine"]["load_average_at_end"] = (
        list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    )

    sys.path.insert(0, str(ROOT))
    from twin._util.atomic import write_text_atomic

    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n", overwrite=True)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
