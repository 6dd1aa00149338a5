"""Input layouts: a bundle, a folder of bundles, single resources, bulk-export NDJSON (.gz)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.io.fhir import FeatureSelection, ingest, read_fhir
from twin.io.fhir.sources import list_files

DATA = Path(__file__).parent / "data" / "fhir"
SYNTHEA = DATA / "synthea"
EVERYTHING = FeatureSelection(min_share=0.0)


def resources(bundle: Path) -> list[dict]:
    return [e["resource"] for e in json.loads(gzip.decompress(bundle.read_bytes()))["entry"]]


def as_bulk_export(folder: Path, bundles: list[Path], gz: bool = False) -> Path:
    """Rewrite bundles the way a FHIR bulk export does: one NDJSON file per type,
    references as ``Type/id`` instead of ``urn:uuid:``."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    for b in bundles:
        text = gzip.decompress(b.read_bytes()).decode()
        for r in json.loads(text)["entry"]:
            by_type.setdefault(r["resource"]["resourceType"], []).append(r["resource"])
    ids = {r["id"]: f"{t}/{r['id']}" for t, rs in by_type.items() for r in rs}
    for rtype, rs in by_type.items():
        lines = []
        for r in rs:
            line = json.dumps(r)
            for uid, ref in ids.items():
                if f"urn:uuid:{uid}" in line:
                    line = line.replace(f"urn:uuid:{uid}", ref)
            lines.append(line)
        data = ("\n".join(lines) + "\n").encode()
        name = f"{rtype}.ndjson"
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def same_cohort(a, b) -> None:
    assert a.schema == b.schema
    assert list(a.individuals) == list(b.individuals)
    np.testing.assert_array_equal(a.mask("observations"), b.mask("observations"))
    np.testing.assert_allclose(
        a.values("observations")[a.mask("observations")],
        b.values("observations")[b.mask("observations")],
    )
    pd.testing.assert_frame_equal(a.covariates, b.covariates)
    ia = a.interventions.sort_values(["individual", "start", "agent"]).reset_index(drop=True)
    ib = b.interventions.sort_values(["individual", "start", "agent"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(ia, ib)


def test_folder_of_bundles_reads_every_bundle_and_ignores_other_files(tmp_path):
    for b in SYNTHEA.iterdir():
        shutil.copy(b, tmp_path / b.name)
    (tmp_path / "README.txt").write_text("not FHIR")
    cohort, report = ingest(tmp_path, features=EVERYTHING)
    pats = sorted(
        r["id"] for b in SYNTHEA.iterdir() for r in resources(b) if r["resourceType"] == "Patient"
    )
    assert list(cohort.individuals) == pats
    assert report.files == 3 and report.files_ignored == [str(tmp_path / "README.txt")]
    n_obs = sum(r["resourceType"] == "Observation" for b in SYNTHEA.iterdir() for r in resources(b))
    assert report.resources["Observation"] == report.used["Observation"] == n_obs
    assert report.unused.get("Claim", 0) > 0  # skipped without validation


def test_single_bundle_file_and_uncompressed_json(tmp_path):
    bundle = next(iter(sorted(SYNTHEA.iterdir())))
    plain = tmp_path / "bundle.json"
    plain.write_bytes(gzip.decompress(bundle.read_bytes()))
    same_cohort(read_fhir(bundle, features=EVERYTHING), read_fhir(plain, features=EVERYTHING))


def test_a_list_of_files_and_folders_reads_each_file_once(tmp_path):
    bundles = sorted(SYNTHEA.iterdir())
    one, rest = tmp_path / "one", tmp_path / "rest"
    one.mkdir(), rest.mkdir()
    shutil.copy(bundles[0], one / bundles[0].name)
    for b in bundles[1:]:
        shutil.copy(b, rest / b.name)
    # a folder, a file inside it listed again, and a single file elsewhere
    listed = [rest, rest / bundles[1].name, one / bundles[0].name]
    cohort, report = ingest(listed, features=EVERYTHING, conditions=EVERYTHING)
    same_cohort(read_fhir(SYNTHEA, features=EVERYTHING, conditions=EVERYTHING), cohort)
    assert report.files == len(bundles)
    assert report.source == ", ".join(str(p) for p in listed)


def test_a_list_naming_a_missing_path_or_nothing_is_refused(tmp_path):
    missing = tmp_path / "nowhere.json"
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        ingest([SYNTHEA, missing])
    with pytest.raises(ValueError, match="list of files and folders is empty"):
        ingest([])


def test_bulk_export_ndjson_gives_the_same_cohort_as_the_bundles(tmp_path):
    bundles = sorted(SYNTHEA.iterdir())
    from_bundles = read_fhir(SYNTHEA, features=EVERYTHING, conditions=EVERYTHING)
    for gz in (False, True):
        folder = as_bulk_export(tmp_path / f"export-{gz}", bundles, gz=gz)
        assert all(
            p.name.endswith(".ndjson.gz" if gz else ".ndjson") for p in list_files(folder)[0]
        )
        same_cohort(from_bundles, read_fhir(folder, features=EVERYTHING, conditions=EVERYTHING))


def test_truncated_ndjson_gz_keeps_the_complete_lines(tmp_path):
    pats = [
        r for b in sorted(SYNTHEA.iterdir()) for r in resources(b) if r["resourceType"] == "Patient"
    ]
    data = gzip.compress(("\n".join(json.dumps(p) for p in pats) + "\n").encode())
    full = gzip.decompress(data)
    last_line_start = full.rfind(b"\n", 0, len(full) - 1) + 1
    cut = next(
        n
        for n in range(len(data))  # cut inside the last line
        if _decodes_to(data[:n]) > last_line_start + 10
    )
    (tmp_path / "Patient.ndjson.gz").write_bytes(data[:cut])
    cohort, report = ingest(tmp_path)
    bad = [s for s in report.skipped if s.category == "unreadable-file"]
    assert len(bad) == 1 and "truncated gzip" in bad[0].reason
    assert bad[0].entry == len(pats) - 1  # the first line that could not be read
    assert list(cohort.individuals) == sorted(p["id"] for p in pats[:-1])


def _decodes_to(prefix: bytes) -> int:
    import zlib

    d = zlib.decompressobj(wbits=31)
    try:
        return len(d.decompress(prefix))
    except zlib.error:
        return 0
