"""Each FHIR resource family lands where docs/fhir.md says (values checked against the JSON)."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import twin
from twin.io.fhir import FeatureSelection, ingest, read_fhir, references

DATA = Path(__file__).parent / "data" / "fhir"
HL7 = DATA / "hl7"
SYNTHEA = DATA / "synthea"
EGFR_BUNDLE = SYNTHEA / "Angelic_Mueller_29d755a6-32fa-482e-8fdd-081300209df8.json.gz"
DECEASED_BUNDLE = SYNTHEA / "Chet_Thompson_eda17701-070d-4fae-9f7d-c8cd6263b63a.json.gz"
EVERYTHING = FeatureSelection(min_share=0.0)


def load(name: str) -> dict:
    return json.loads((HL7 / name).read_text())


def bundle_resources(path: Path) -> list[dict]:
    return [e["resource"] for e in json.loads(gzip.decompress(path.read_bytes()))["entry"]]


def write(folder: Path, *resources: dict) -> Path:
    """Write resources as single-resource JSON files (the HL7 example layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(resources):
        (folder / f"{i:03d}-{r['resourceType']}.json").write_text(json.dumps(r))
    return folder


def observed(cohort: twin.Cohort, modality: str, feature: str, individual: str) -> pd.DataFrame:
    long = cohort.to_long(modality)
    return long[(long["feature"] == feature) & (long["individual"] == individual)]


@pytest.fixture(scope="module")
def synthea() -> tuple[twin.Cohort, object]:
    return ingest(SYNTHEA, features=EVERYTHING, conditions=EVERYTHING)


def test_patient_covariates_come_from_the_patient_resource(synthea):
    cohort, _ = synthea
    pat = next(r for r in bundle_resources(DECEASED_BUNDLE) if r["resourceType"] == "Patient")
    cov = cohort.covariates.loc[pat["id"]]
    assert cov["sex"] == pat["gender"]
    assert cov["birth_date"] == pd.Timestamp(pat["birthDate"])
    died = pd.Timestamp(pat["deceasedDateTime"]).tz_convert(None)
    assert cov["deceased"] == died and cov["deceased_flag"] == 1.0
    race = next(e for e in pat["extension"] if e["url"].endswith("us-core-race"))
    assert cov["race"] == next(x["valueString"] for x in race["extension"] if x["url"] == "text")
    ref = cohort.reference_time[pat["id"]]
    days = (ref - cov["birth_date"]) / pd.Timedelta(days=1)
    assert cov["age"] == pytest.approx(days / 365.25)
    alive = cohort.covariates.drop(index=pat["id"])
    assert (alive["deceased_flag"] == 0).all() and alive["deceased"].isna().all()


def test_numeric_observation_keeps_value_time_and_unit(synthea):
    cohort, _ = synthea
    res = bundle_resources(EGFR_BUNDLE)
    pid = next(r["id"] for r in res if r["resourceType"] == "Patient")
    weights = [
        r
        for r in res
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "29463-7"
    ]
    got = observed(cohort, "observations", "29463-7", pid).sort_values("time")
    want = sorted(
        (pd.Timestamp(w["effectiveDateTime"]).tz_convert(None), w["valueQuantity"]["value"])
        for w in weights
    )
    assert [t for t, _ in want] == list(got["time"])
    np.testing.assert_allclose(got["value"], [v for _, v in want])
    feat = cohort.features("observations").set_index("name").loc["29463-7"]
    assert (feat["unit"], feat["system"], feat["type"]) == ("kg", "http://loinc.org", "continuous")
    assert feat["display"] == weights[0]["code"]["coding"][0]["display"]


def test_a_death_without_a_date_is_known_but_undated(tmp_path):
    """``deceasedBoolean: true``: the patient died, date unknown -- ``death_t`` is -inf,
    which ends forecasts at the last record; the living patient has no death."""
    bp = load("Observation-blood-pressure.json")
    dead = {**load("Patient-example.json"), "deceasedBoolean": True}
    cohort = read_fhir(write(tmp_path, dead, bp), features=EVERYTHING)
    assert cohort.covariates.loc["example", "deceased_flag"] == 1.0
    assert cohort.death_t["example"] == -np.inf
    alive = {**load("Patient-example.json"), "deceasedBoolean": False}
    cohort = read_fhir(write(tmp_path / "alive", alive, bp), features=EVERYTHING)
    assert np.isnan(cohort.death_t["example"])


def test_blood_pressure_components_become_separate_features(tmp_path):
    bp = load("Observation-blood-pressure.json")
    cohort = read_fhir(write(tmp_path, load("Patient-example.json"), bp), features=EVERYTHING)
    for comp in bp["component"]:
        code = comp["code"]["coding"][0]["code"]
        got = observed(cohort, "observations", code, "example")
        assert list(got["value"]) == [comp["valueQuantity"]["value"]]
        assert cohort.features("observations").set_index("name").loc[code, "unit"] == "mm[Hg]"
    assert "85354-9" not in set(cohort.features("observations")["name"])  # the panel has no value


def test_coded_observation_is_categorical_with_display_levels(synthea):
    cohort, _ = synthea
    feat = cohort.features("observations").set_index("name").loc["72166-2"]
    assert feat["type"] == "categorical"
    smoking = [
        r
        for p in SYNTHEA.iterdir()
        for r in bundle_resources(p)
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "72166-2"
    ]
    displays = {r["valueCodeableConcept"]["coding"][0]["display"] for r in smoking}
    assert displays <= set(feat["levels"])
    long = cohort.to_long("observations")
    codes = long.loc[long["feature"] == "72166-2", "value"].astype(int)
    assert {feat["levels"][c] for c in codes} == displays


def test_egfr_units_are_kept_apart_and_reported(synthea):
    cohort, report = synthea
    egfr = [
        r
        for r in bundle_resources(EGFR_BUNDLE)
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "33914-3"
    ]
    by_unit = {}
    for r in egfr:
        by_unit.setdefault(r["valueQuantity"]["code"], []).append(r["valueQuantity"]["value"])
    assert set(by_unit) == {"mL/min", "mL/min/{1.73_m2}"}  # the data really mixes them
    feats = cohort.features("observations").set_index("name")
    assert feats.loc["33914-3", "unit"] == "mL/min/{1.73_m2}"
    assert feats.loc["33914-3[mL/min]", "unit"] == "mL/min"
    pid = next(r["id"] for r in bundle_resources(EGFR_BUNDLE) if r["resourceType"] == "Patient")
    for name, unit in (("33914-3", "mL/min/{1.73_m2}"), ("33914-3[mL/min]", "mL/min")):
        got = observed(cohort, "observations", name, pid)["value"]
        np.testing.assert_allclose(sorted(got), sorted(by_unit[unit]))
    split = [s for s in report.unit_splits if s["code"] == "33914-3"]
    assert split and split[0]["feature"] == "33914-3[mL/min]"
    assert "33914-3[mL/min]" in report.summary()


def test_convertible_units_are_converted_to_one_feature(tmp_path):
    base = load("Observation-bmi.json")
    weight_kg = {
        **copy.deepcopy(base),
        "id": "w1",
        "effectiveDateTime": "2020-01-01",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "valueQuantity": {"value": 80.0, "unit": "kg", "code": "kg"},
    }
    weight_lb = {
        **copy.deepcopy(weight_kg),
        "id": "w2",
        "effectiveDateTime": "2020-02-01",
        "valueQuantity": {"value": 176.0, "unit": "lb", "code": "[lb_av]"},
    }
    glucose = {
        **copy.deepcopy(base),
        "id": "g1",
        "effectiveDateTime": "2020-03-01",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "valueQuantity": {"value": 5.5, "unit": "mmol/L", "code": "mmol/L"},
    }
    cohort, report = ingest(
        write(tmp_path, load("Patient-example.json"), weight_kg, weight_lb, glucose),
        features=EVERYTHING,
    )
    w = observed(cohort, "observations", "29463-7", "example").sort_values("time")
    np.testing.assert_allclose(w["value"], [80.0, 176.0 * 0.45359237])
    g = observed(cohort, "observations", "2339-0", "example")
    np.testing.assert_allclose(g["value"], [5.5 * 180.156 / 10])  # mmol/L -> mg/dL
    assert {(c["from"], c["to"]) for c in report.unit_conversions} >= {
        ("[lb_av]", "kg"),
        ("mmol/L", "mg/dL"),
    }


def test_condition_indicator_follows_onset_and_abatement(tmp_path):
    cond = load("Condition-f204.json")
    times = [
        "2013-03-01",
        cond["onsetDateTime"],
        "2013-03-15",
        cond["abatementDateTime"],
        "2013-04-01",
    ]
    temps = []
    for i, t in enumerate(times):
        obs = copy.deepcopy(load("Observation-body-temperature.json"))
        obs.update(id=f"t{i}", subject={"reference": "Patient/f201"}, effectiveDateTime=t)
        temps.append(obs)
    cohort = read_fhir(
        write(tmp_path, load("Patient-f201.json"), cond, *temps),
        features=EVERYTHING,
        conditions=EVERYTHING,
    )
    code = cond["code"]["coding"][0]["code"]
    got = observed(cohort, "conditions", code, "f201").set_index("time")["value"]
    assert list(got.loc[pd.to_datetime(times)]) == [0.0, 1.0, 1.0, 0.0, 0.0]
    feat = cohort.features("conditions").set_index("name").loc[code]
    assert (feat["type"], feat["system"]) == ("binary", "http://snomed.info/sct")


def test_condition_ended_at_unknown_date_is_unobserved_after_onset(tmp_path):
    cond = load("Condition-f204.json")
    del cond["abatementDateTime"]  # clinicalStatus stays "inactive"
    later = copy.deepcopy(load("Observation-body-temperature.json"))
    later.update(subject={"reference": "Patient/f201"}, effectiveDateTime="2014-01-01")
    cohort = read_fhir(
        write(tmp_path, load("Patient-f201.json"), cond, later),
        conditions=EVERYTHING,
        features=EVERYTHING,
    )
    code = cond["code"]["coding"][0]["code"]
    got = observed(cohort, "conditions", code, "f201").set_index("time")["value"]
    assert got.loc[pd.Timestamp(cond["onsetDateTime"])] == 1.0
    assert pd.Timestamp("2014-01-01") not in got.index  # unknown, so masked, not 0 or 1


def test_medication_resources_become_interventions(tmp_path):
    req = load("MedicationRequest-medrx0308.json")
    admin = load("MedicationAdministration-medadmin0308.json")
    contained = load("MedicationRequest-medrx0301.json")
    statement = {
        "resourceType": "MedicationStatement",
        "id": "ms1",
        "status": "active",
        "medicationCodeableConcept": req["medicationCodeableConcept"],
        "subject": {"reference": "Patient/pat1"},
        "effectivePeriod": {"start": "2015-02-01", "end": "2015-03-01"},
        "dosage": [
            {
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg", "code": "mg"}}],
            }
        ],
    }
    cohort = read_fhir(write(tmp_path, load("Patient-pat1.json"), req, admin, contained, statement))
    iv = cohort.interventions.set_index("agent")
    assert set(iv["kind"]) == {"medication"} and set(iv["individual"]) == {"pat1"}
    r = iv.loc[req["medicationCodeableConcept"]["coding"][0]["code"]]
    r = r[r["start"] == pd.Timestamp(req["authoredOn"])].iloc[0]
    assert r["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm"
    assert r["interval"] == pytest.approx(4 / 24)  # every 4 h
    assert r["route"] == req["dosageInstruction"][0]["route"]["coding"][0]["display"]
    a = iv.loc[admin["medicationCodeableConcept"]["coding"][0]["code"]]
    assert a["start"] == pd.Timestamp(admin["effectivePeriod"]["start"]).tz_convert(None)
    assert a["end"] == pd.Timestamp(admin["effectivePeriod"]["end"]).tz_convert(None)
    assert (a["dose"], a["unit"]) == (admin["dosage"]["dose"]["value"], "U")
    s = iv[iv["start"] == pd.Timestamp("2015-02-01")].iloc[0]
    assert (s["dose"], s["unit"], s["interval"], s["end"]) == (
        5.0,
        "mg",
        0.5,
        pd.Timestamp("2015-03-01"),
    )
    med = next(c for c in contained["contained"] if c["resourceType"] == "Medication")
    assert med["code"]["coding"][0]["code"] in iv.index  # resolved from `contained`


def test_procedure_and_immunization_become_interventions(tmp_path, synthea):
    proc = load("Procedure-f201.json")
    cohort = read_fhir(write(tmp_path, load("Patient-f201.json"), proc))
    row = cohort.interventions.iloc[0]
    assert (row["agent"], row["kind"], row["system"]) == (
        proc["code"]["coding"][0]["code"],
        "procedure",
        "http://snomed.info/sct",
    )
    assert row["start"] == pd.Timestamp(proc["performedPeriod"]["start"]).tz_convert(None)
    assert row["end"] == pd.Timestamp(proc["performedPeriod"]["end"]).tz_convert(None)
    big, _ = synthea
    n_imm = sum(
        r["resourceType"] == "Immunization" for p in SYNTHEA.iterdir() for r in bundle_resources(p)
    )
    assert (big.interventions["kind"] == "immunization").sum() == n_imm > 0


def test_imaging_and_molecular_sequence_are_kept_as_references(tmp_path):
    img, seq = load("ImagingStudy-example.json"), load("MolecularSequence-example.json")
    cohort = read_fhir(
        write(tmp_path, load("Patient-dicom.json"), load("Patient-example.json"), img, seq)
    )
    table = references(cohort).set_index("resource_type")
    i = table.loc["ImagingStudy"]
    assert (i["individual"], i["id"]) == ("dicom", img["id"])
    assert i["details"]["modality"] == [img["series"][0]["modality"]["code"]]
    assert i["details"]["body_site"] == [img["series"][0]["bodySite"]["display"]]
    assert i["details"]["number_of_series"] == img["numberOfSeries"]
    assert i["date"] == pd.Timestamp(img["started"]).tz_convert(None)
    s = table.loc["MolecularSequence"]
    assert (s["individual"], s["id"], s["details"]["type"]) == ("example", seq["id"], "dna")
    assert s["details"]["variants"][0]["observedAllele"] == seq["variant"][0]["observedAllele"]


def test_genomics_observation_is_a_reference_and_a_categorical_feature(tmp_path):
    gen = load("Observation-example-genetics-2.json")
    cohort = read_fhir(write(tmp_path, load("Patient-example.json"), gen), features=EVERYTHING)
    ref = references(cohort)
    assert list(ref["id"]) == [gen["id"]] and ref["resource_type"][0] == "Observation"
    comp = {c["code"]["coding"][0]["code"]: c for c in gen["component"]}
    feats = cohort.features("observations").set_index("name")
    for code, c in comp.items():
        want = c["valueCodeableConcept"]["coding"][0]["display"]
        assert feats.loc[code, "type"] == "categorical" and want in feats.loc[code, "levels"]
        assert ref["details"][0]["components"][c["code"]["coding"][0]["display"]] == want


def test_ingested_cohort_survives_save_and_load(tmp_path, synthea):
    cohort, report = synthea
    path = cohort.save(tmp_path / "cohort.nc")
    back = twin.Cohort.load(path)
    assert back.schema == cohort.schema
    np.testing.assert_array_equal(back.mask("observations"), cohort.mask("observations"))
    np.testing.assert_allclose(
        back.values("observations")[back.mask("observations")],
        cohort.values("observations")[cohort.mask("observations")],
    )
    pd.testing.assert_frame_equal(references(back), references(cohort))
    stored = back.attr_json("twin_ingest_report")
    assert stored["individuals"] == report.individuals == len(back)
    assert len(back.interventions) == len(cohort.interventions)


def test_min_share_selects_features_and_reports_the_rest(synthea):
    cohort, _ = synthea
    shares = cohort.to_long("observations").groupby("feature")["individual"].nunique() / len(cohort)
    rare = shares[shares < 1.0].index[0]
    strict, report = ingest(SYNTHEA, features=FeatureSelection(min_share=1.0))
    kept = set(strict.features("observations")["name"])
    assert kept == set(shares[shares >= 1.0].index)
    assert rare in report.dropped_features["observations"]
    only, _ = ingest(SYNTHEA, features=FeatureSelection.only(["8480-6", "8462-4"]))
    assert set(only.features("observations")["name"]) == {"8480-6", "8462-4"}
    no_egfr, _ = ingest(SYNTHEA, features=FeatureSelection(min_share=0, exclude=["33914-3"]))
    assert not any(n.startswith("33914-3") for n in no_egfr.features("observations")["name"])
