"""One bad entry or file never aborts an import: each problem is reported, the rest is kept."""

from __future__ import annotations

import copy
import gzip
import json
import shutil
from pathlib import Path

import pytest

from twin.io.fhir import FeatureSelection, FHIRIngestError, ingest

DATA = Path(__file__).parent / "data" / "fhir"
HL7 = DATA / "hl7"
GOOD_BUNDLE = DATA / "synthea" / "Liz_Conn_27c911c6-f045-4ffa-af5d-6eba57ac94b2.json.gz"
OTHER_BUNDLE = DATA / "synthea" / "Angelic_Mueller_29d755a6-32fa-482e-8fdd-081300209df8.json.gz"
EVERYTHING = FeatureSelection(min_share=0.0)


def load(name: str) -> dict:
    return json.loads((HL7 / name).read_text())


def patient_id(bundle: Path) -> str:
    doc = json.loads(gzip.decompress(bundle.read_bytes()))
    return next(
        e["resource"]["id"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient"
    )


def bundle(path: Path, *resources: dict) -> Path:
    entries = [
        {"fullUrl": f"urn:uuid:{r.get('id', i)}", "resource": r} for i, r in enumerate(resources)
    ]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    return path


def weight(oid: str, value: object, unit: str | None = "kg", subject: str = "Patient/example"):
    obs = load("Observation-body-temperature.json")
    obs.update(
        id=oid, subject={"reference": subject}, effectiveDateTime=f"2020-01-0{1 + len(oid) % 9}"
    )
    obs["code"] = {
        "coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]
    }
    q = {"value": value, "system": "http://unitsofmeasure.org"}
    if unit:
        q.update(unit=unit, code=unit)
    obs["valueQuantity"] = q
    return obs


def only(report, category: str):
    found = [s for s in report.skipped if s.category == category]
    assert len(found) == 1, [str(s) for s in report.skipped]
    return found[0]


def test_truncated_gzip_is_reported_and_other_files_kept(tmp_path):
    shutil.copy(GOOD_BUNDLE, tmp_path / GOOD_BUNDLE.name)
    raw = OTHER_BUNDLE.read_bytes()
    (tmp_path / "truncated.json.gz").write_bytes(raw[: len(raw) // 2])
    cohort, report = ingest(tmp_path)
    bad = only(report, "unreadable-file")
    assert bad.file.endswith("truncated.json.gz") and "truncated gzip" in bad.reason
    assert "truncated.json.gz" in str(bad) and report.files_failed == 1
    assert list(cohort.individuals) == [patient_id(GOOD_BUNDLE)]


def test_invalid_json_file_is_reported_and_other_files_kept(tmp_path):
    shutil.copy(GOOD_BUNDLE, tmp_path / GOOD_BUNDLE.name)
    (tmp_path / "broken.json").write_text('{"resourceType": "Bundle", "entry": [')
    cohort, report = ingest(tmp_path)
    bad = only(report, "unreadable-file")
    assert bad.file.endswith("broken.json") and "invalid JSON" in bad.reason
    assert list(cohort.individuals) == [patient_id(GOOD_BUNDLE)]


def test_invalid_ndjson_line_is_reported_and_other_lines_kept(tmp_path):
    a, b = load("Patient-example.json"), load("Patient-f201.json")
    lines = [json.dumps(a), '{"resourceType": "Patient", "id": ', json.dumps(b)]
    (tmp_path / "Patient.ndjson").write_text("\n".join(lines) + "\n")
    cohort, report = ingest(tmp_path)
    bad = only(report, "invalid-json")
    assert bad.entry == 1 and "Patient.ndjson line 2" in str(bad)
    # one line number (the file's), with the parser's column: not the parser's "line 1"
    assert "line 1" not in str(bad) and "end of data at the end of the line" in bad.reason
    assert sorted(cohort.individuals) == sorted([a["id"], b["id"]])


def test_unknown_resource_types_are_reported_and_the_rest_kept(tmp_path):
    pat = load("Patient-example.json")
    alien = {"resourceType": "Spaceship", "id": "enterprise"}
    r5_only = {"resourceType": "NutritionIntake", "id": "lunch", "status": "completed"}
    bundle(tmp_path / "b.json", pat, alien, r5_only, load("Observation-bmi.json"))
    cohort, report = ingest(tmp_path, features=EVERYTHING)
    bad = {s.resource_id: s for s in report.skipped if s.category == "unknown-resource-type"}
    assert set(bad) == {"enterprise", "lunch"}
    assert bad["enterprise"].entry == 1 and "'Spaceship'" in bad["enterprise"].reason
    assert bad["lunch"].entry == 2 and "R4B" in bad["lunch"].reason
    assert list(cohort.individuals) == [pat["id"]]
    assert "39156-5" in set(cohort.features("observations")["name"])


def test_r5_only_field_is_rejected_by_r4b_and_the_rest_kept(tmp_path):
    r5 = load("Observation-bmi.json")
    r5["id"] = "r5-style"
    r5["triggeredBy"] = [{"observation": {"reference": "Observation/x"}, "type": "reflex"}]
    bundle(
        tmp_path / "b.json",
        load("Patient-example.json"),
        r5,
        load("Observation-body-temperature.json"),
    )
    cohort, report = ingest(tmp_path, features=EVERYTHING)
    bad = only(report, "invalid-resource")
    assert (bad.resource_type, bad.resource_id, bad.entry) == ("Observation", "r5-style", 1)
    assert "triggeredBy" in bad.reason and "Extra inputs are not permitted" in bad.reason
    assert set(cohort.features("observations")["name"]) == {"8310-5"}


def test_quantity_without_unit_is_skipped_and_the_rest_kept(tmp_path):
    bp = load("Observation-blood-pressure.json")
    del bp["component"][1]["valueQuantity"]["unit"]
    del bp["component"][1]["valueQuantity"]["code"]
    bp["component"][1]["valueQuantity"]["value"] = 8.0  # diastolic in kPa? not assumed
    bundle(
        tmp_path / "b.json",
        load("Patient-example.json"),
        bp,
        weight("w1", 70.0, unit=None, subject="Patient/example"),
    )
    cohort, report = ingest(tmp_path, features=EVERYTHING)
    assert report.skipped_counts == {"missing-unit": 2} and not report.notes
    bad = {s.resource_id: s for s in report.skipped}
    assert bad["blood-pressure"].entry == 1 and "8462-4" in bad["blood-pressure"].reason
    assert "29463-7" in bad["w1"].reason and "has no unit" in bad["w1"].reason
    assert set(cohort.features("observations")["name"]) == {"8480-6"}  # systolic kept


def test_unitless_blood_pressure_in_range_is_read_in_mmhg_and_reported(tmp_path):
    """Synthea writes some BP components without a unit: read in mm[Hg], counted, not skipped."""
    bp = load("Observation-blood-pressure.json")
    comp = bp["component"][1]["valueQuantity"]  # diastolic
    value = comp["value"]
    del comp["unit"], comp["code"]
    bundle(tmp_path / "b.json", load("Patient-example.json"), bp)
    cohort, report = ingest(tmp_path, features=EVERYTHING)
    assert report.notes == {"unit-assumed": 1} and report.n_skipped == 0
    assert "used with an assumption: 1 unit-assumed" in str(report)
    feats = cohort.features("observations").set_index("name")
    assert feats.loc["8462-4", "unit"] == "mm[Hg]"
    long = cohort.to_long("observations")
    assert long.loc[long["feature"] == "8462-4", "value"].tolist() == [value]


def test_impossible_values_are_skipped_and_the_rest_kept(tmp_path):
    bp = load("Observation-blood-pressure.json")
    bp["component"][0]["valueQuantity"]["value"] = 900  # systolic
    bundle(
        tmp_path / "b.json",
        load("Patient-example.json"),
        weight("w-neg", -5.0),
        weight("w-ok", 70.5),
        bp,
    )
    cohort, report = ingest(tmp_path, features=EVERYTHING)
    bad = {s.resource_id: s for s in report.skipped if s.category == "impossible-value"}
    assert set(bad) == {"w-neg", "blood-pressure"}
    assert "-5 kg" in bad["w-neg"].reason and "plausible range" in bad["w-neg"].reason
    assert "900" in bad["blood-pressure"].reason and bad["w-neg"].entry == 1
    long = cohort.to_long("observations")
    assert list(long.loc[long["feature"] == "29463-7", "value"]) == [70.5]
    assert "8462-4" in set(long["feature"]) and "8480-6" not in set(long["feature"])


def test_non_numeric_value_is_rejected_and_the_rest_kept(tmp_path):
    bundle(
        tmp_path / "b.json",
        load("Patient-example.json"),
        weight("w-text", "heavy"),
        weight("w-ok", 70.5),
    )
    cohort, report = ingest(tmp_path, features=EVERYTHING)
    bad = only(report, "invalid-resource")
    assert bad.resource_id == "w-text" and "valueQuantity.value" in bad.reason
    assert list(cohort.to_long("observations")["value"]) == [70.5]


def test_duplicate_ids_keep_the_first_and_are_reported(tmp_path):
    pat = load("Patient-example.json")
    again = copy.deepcopy(pat)
    again["gender"] = "female" if pat["gender"] != "female" else "male"
    bundle(tmp_path / "a.json", pat, weight("w1", 70.0))
    bundle(tmp_path / "b.json", again, weight("w1", 99.0), weight("w2", 71.0))
    cohort, report = ingest(tmp_path, features=EVERYTHING)
    dups = {s.resource_type: s for s in report.skipped if s.category == "duplicate-id"}
    assert set(dups) == {"Patient", "Observation"}
    assert dups["Patient"].file.endswith("b.json") and "a.json entry 0" in dups["Patient"].reason
    assert dups["Observation"].resource_id == "w1" and dups["Observation"].entry == 1
    assert cohort.covariates.loc[pat["id"], "sex"] == pat["gender"]
    assert sorted(cohort.to_long("observations")["value"]) == [70.0, 71.0]


def test_observation_for_unknown_patient_is_skipped_and_the_rest_kept(tmp_path):
    bundle(
        tmp_path / "b.json",
        load("Patient-example.json"),
        weight("orphan", 80.0, subject="Patient/nobody"),
        weight("w-ok", 70.0),
    )
    cohort, report = ingest(tmp_path, features=EVERYTHING)
    bad = only(report, "unknown-subject")
    assert bad.resource_id == "orphan" and "'Patient/nobody'" in bad.reason and bad.entry == 1
    assert list(cohort.to_long("observations")["value"]) == [70.0]


def test_bundle_entry_without_resource_is_reported(tmp_path):
    path = bundle(tmp_path / "b.json", load("Patient-example.json"))
    doc = json.loads(path.read_text())
    doc["entry"].insert(0, {"request": {"method": "DELETE", "url": "Patient/gone"}})
    path.write_text(json.dumps(doc))
    cohort, report = ingest(tmp_path)
    bad = only(report, "not-a-resource")
    assert bad.entry == 0 and "without a resource" in bad.reason
    assert list(cohort.individuals) == ["example"]


def test_nothing_readable_raises_a_clear_error(tmp_path):
    (tmp_path / "broken.json").write_text("not json at all")
    with pytest.raises(FHIRIngestError, match=r"no Patient resource could be read.*broken\.json"):
        ingest(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FHIRIngestError, match="no FHIR files found"):
        ingest(empty)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        ingest(tmp_path / "missing")


def test_a_rejected_patient_is_named_as_the_reason_its_records_are_skipped(tmp_path):
    """A Patient failing validation drops its records; the report says where it is and
    shows the bad value, instead of claiming the Patient is absent."""
    doc = json.loads(gzip.decompress(GOOD_BUNDLE.read_bytes()))
    entry = next(
        i for i, e in enumerate(doc["entry"]) if e["resource"]["resourceType"] == "Patient"
    )
    doc["entry"][entry]["resource"]["birthDate"] = "19xx-01-01"
    (tmp_path / "liz.json").write_text(json.dumps(doc))
    shutil.copy(OTHER_BUNDLE, tmp_path)
    cohort, report = ingest(tmp_path, features=EVERYTHING)
    bad = only(report, "invalid-resource")
    assert (bad.resource_type, bad.entry) == ("Patient", entry)
    assert "birthDate" in bad.reason and "'19xx-01-01'" in bad.reason
    orphans = [s for s in report.skipped if s.category == "unknown-subject"]
    assert orphans and all(
        "rejected by validation (" in s.reason and f"liz.json, entry {entry}:" in s.reason
        for s in orphans
    )
    assert list(cohort.individuals) == [patient_id(OTHER_BUNDLE)]
