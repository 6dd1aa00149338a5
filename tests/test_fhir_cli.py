"""``twin ingest``: writes a cohort, refuses to overwrite, fails clearly on empty input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

import twin
from twin.cli import app

SYNTHEA = Path(__file__).parent / "data" / "fhir" / "synthea"
runner = CliRunner()


def test_ingest_writes_a_cohort_and_prints_the_report(tmp_path):
    out = tmp_path / "cohort.nc"
    result = runner.invoke(app, ["ingest", str(SYNTHEA), "-o", str(out), "--min-share", "0.5"])
    assert result.exit_code == 0, result.output
    cohort = twin.Cohort.load(out)
    assert len(cohort) == 3
    assert "FHIR ingestion of" in result.output and "kept apart" in result.output
    assert cohort.attr_json("twin_ingest_report")["individuals"] == 3


def test_ingest_medication_days_sets_how_long_a_lone_stopped_order_lasts(tmp_path):
    out = tmp_path / "cohort.nc"
    args = ["ingest", str(SYNTHEA), "-o", str(out), "-q", "--medication-days", "60"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "end-assumed" in result.output
    iv = twin.Cohort.load(out).interventions
    med = iv[iv["kind"] == "medication"]
    once = med.groupby(["individual", "agent"])["agent"].transform("size") == 1
    lasted = (med["end"] - med["start"])[once & med["end"].notna()]
    assert len(lasted) and (lasted == pd.Timedelta(days=60)).all()
    bad = runner.invoke(app, [*args[:4], "-q", "--overwrite", "--medication-days", "0"])
    assert bad.exit_code == 1 and "medication_days must be a positive" in bad.output


def test_ingest_reads_several_inputs(tmp_path):
    files = sorted(SYNTHEA.iterdir())
    out = tmp_path / "cohort.nc"
    result = runner.invoke(app, ["ingest", *map(str, files[:2]), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert len(twin.Cohort.load(out)) == 2


def test_ingest_refuses_to_overwrite_without_flag(tmp_path):
    out = tmp_path / "cohort.nc"
    out.write_bytes(b"precious")
    result = runner.invoke(app, ["ingest", str(SYNTHEA), "-o", str(out), "--quiet"])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert out.read_bytes() == b"precious"
    again = runner.invoke(
        app, ["ingest", str(SYNTHEA), "-o", str(out), "--overwrite", "-q", "--jobs", "2"]
    )
    assert again.exit_code == 0, again.output
    assert len(twin.Cohort.load(out)) == 3


def test_ingest_fails_with_a_message_when_nothing_can_be_read(tmp_path):
    empty = tmp_path / "in"
    empty.mkdir()
    (empty / "notes.json").write_text("{not json")
    out = tmp_path / "cohort.nc"
    result = runner.invoke(app, ["ingest", str(empty), "-o", str(out), "-q"])
    assert result.exit_code == 1
    assert "no Patient resource could be read" in result.output and "notes.json" in result.output
    assert not out.exists()
    missing = runner.invoke(app, ["ingest", str(tmp_path / "nope"), "-o", str(out), "-q"])
    assert missing.exit_code == 1 and "no such file or folder" in missing.output


def test_parallel_ingest_matches_serial(tmp_path):
    from twin.io.fhir import ingest

    for b in SYNTHEA.iterdir():
        shutil.copy(b, tmp_path / b.name)
    serial, r1 = ingest(tmp_path, n_jobs=1)
    parallel, r2 = ingest(tmp_path, n_jobs=2)
    assert r2.n_jobs == 2 and serial.schema == parallel.schema
    assert (
        serial.data["observations"].fillna(-1) == parallel.data["observations"].fillna(-1)
    ).all()
    assert r1.skipped == r2.skipped and r1.resources == r2.resources
