"""Medication orders without an end become courses that end (twin.io.fhir.courses)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from twin.io.fhir import ingest
from twin.io.fhir.courses import close_medication_courses

SYNTHEA = Path(__file__).parent / "data" / "fhir" / "synthea"
BUNDLE = SYNTHEA / "Angelic_Mueller_29d755a6-32fa-482e-8fdd-081300209df8.json.gz"
T = pd.Timestamp


def table(rows: list[tuple]) -> pd.DataFrame:
    cols = ["individual", "agent", "kind", "start", "end", "status"]
    out = pd.DataFrame(rows, columns=cols)
    out["start"] = pd.to_datetime(out["start"])
    out["end"] = pd.to_datetime(out["end"])
    return out


def test_each_rule_on_a_hand_built_table():
    iv = table(
        [
            # a statin renewed yearly, the last order still active
            ("p1", "statin", "medication", "2010-01-01", None, "stopped"),
            ("p1", "statin", "medication", "2011-01-01", None, "stopped"),
            ("p1", "statin", "medication", "2012-01-01", None, "active"),
            # monthly chemotherapy cycles, the last one stopped
            ("p1", "cisplatin", "medication", "2015-01-01", None, "stopped"),
            ("p1", "cisplatin", "medication", "2015-01-29", None, "stopped"),
            # one stopped order, never renewed; one with its own end
            ("p2", "ibuprofen", "medication", "2016-03-01", None, "stopped"),
            ("p2", "insulin", "medication", "2016-03-01", "2016-04-01", "stopped"),
            # two orders of one drug written at once: concurrent, not a renewal
            ("p2", "aspirin", "medication", "2017-05-01", None, "completed"),
            ("p2", "aspirin", "medication", "2017-05-01", None, "completed"),
            # not medications: left alone
            ("p2", "appendectomy", "procedure", "2018-01-01", None, "completed"),
            ("p3", "metformin", "medication", "2019-01-01", None, "on-hold"),
        ]
    )
    out, counts = close_medication_courses(iv.sample(frac=1, random_state=0), assumed_days=30)
    out = out.loc[iv.index]
    expected = [
        T("2011-01-01"),  # renewal
        T("2012-01-01"),  # renewal
        pd.NaT,  # active: still taken
        T("2015-01-29"),  # renewal
        T("2015-01-29") + pd.Timedelta(days=28),  # one more renewal interval
        T("2016-03-31"),  # 30 days
        T("2016-04-01"),  # given
        T("2017-05-31"),
        T("2017-05-31"),
        pd.NaT,
        pd.NaT,
    ]
    pd.testing.assert_series_equal(
        out["end"].reset_index(drop=True), pd.Series(expected, name="end"), check_dtype=False
    )
    assert counts == {
        "end-from-renewal": 3,
        "end-from-supply": 0,
        "end-from-renewal-interval": 1,
        "end-assumed": 3,
    }
    # nothing else changes
    pd.testing.assert_frame_equal(out.drop(columns="end"), iv.drop(columns="end"))


def test_a_known_supply_ends_a_stopped_order_before_any_assumption():
    iv = table(
        [
            ("p1", "amoxicillin", "medication", "2015-01-15", None, "completed"),  # alone
            ("p1", "statin", "medication", "2010-01-01", None, "stopped"),
            ("p1", "statin", "medication", "2011-01-01", None, "stopped"),  # last of chain
            ("p1", "insulin", "medication", "2012-01-01", None, "active"),  # still taken
            ("p1", "opioid", "medication", "2013-01-01", None, "stopped"),
            ("p1", "opioid", "medication", "2013-01-05", None, "stopped"),  # renewed early
        ]
    )
    iv["supply_days"] = [10.0, 90.0, 90.0, 30.0, 30.0, float("nan")]
    out, counts = close_medication_courses(iv, assumed_days=30)
    assert out["end"].tolist() == [
        T("2015-01-25"),  # its 10-day supply, not the assumed 30 days
        T("2011-01-01"),  # renewal
        T("2011-01-01") + pd.Timedelta(days=90),  # supply, not the 365-day interval
        pd.NaT,
        T("2013-01-05"),  # the renewal comes before the supply runs out
        T("2013-01-05") + pd.Timedelta(days=4),  # no supply given: the renewal interval
    ]
    assert counts == {
        "end-from-renewal": 2,
        "end-from-supply": 2,
        "end-from-renewal-interval": 1,
        "end-assumed": 0,
    }


def test_supply_of_hl7_requests_is_read_with_its_refills():
    from twin.io.fhir.medication import supply_days

    hl7 = Path(__file__).parent / "data" / "fhir" / "hl7"
    once = json.loads((hl7 / "MedicationRequest-medrx0301.json").read_text())
    assert once["status"] == "completed"
    assert supply_days(once["dispenseRequest"]) == 10.0  # 10 days, 0 repeats
    refills = {**once["dispenseRequest"], "numberOfRepeatsAllowed": 3}
    assert supply_days(refills) == 40.0
    weeks = {"expectedSupplyDuration": {"value": 2, "unit": "weeks"}}
    assert supply_days(weeks) == 14.0
    text_code = {"expectedSupplyDuration": {"value": 3, "unit": "Months", "code": "months"}}
    assert supply_days(text_code) == pytest.approx(3 * 30.4375)
    typo = {"expectedSupplyDuration": {"value": 999999, "code": "d"}, "numberOfRepeatsAllowed": 2}
    assert pd.isna(supply_days(typo))  # read as unknown, so the other rules apply
    assert pd.isna(supply_days({"expectedSupplyDuration": {"value": 2, "code": "furlong"}}))
    assert pd.isna(supply_days(None))
    cohort, report = ingest([hl7 / "Patient-pat1.json", hl7 / "MedicationRequest-medrx0301.json"])
    row = cohort.interventions.iloc[0]
    assert row["end"] - row["start"] == pd.Timedelta(days=10)
    assert report.notes["end-from-supply"] == 1 and "end-assumed" not in report.notes


def test_bad_assumed_duration_is_refused():
    with pytest.raises(ValueError, match="assumed_days must be a positive number"):
        close_medication_courses(table([]), assumed_days=0)
    with pytest.raises(ValueError, match="medication_days must be a positive number"):
        ingest(BUNDLE, medication_days=-5)


def test_a_synthea_bundle_has_no_stacked_or_endless_stopped_orders():
    resources = [e["resource"] for e in json.loads(gzip.decompress(BUNDLE.read_bytes()))["entry"]]
    requests = [r for r in resources if r["resourceType"] == "MedicationRequest"]
    assert requests and not any(
        "end" in json.dumps(r.get("dosageInstruction", "")) for r in requests
    )
    cohort, report = ingest(BUNDLE, medication_days=45)
    med = cohort.interventions[cohort.interventions["kind"] == "medication"]
    status = {r["medicationCodeableConcept"]["coding"][0]["code"]: r["status"] for r in requests}
    # only orders still active at the last renewal stay open
    open_agents = set(med.loc[med["end"].isna(), "agent"])
    assert open_agents and all(status[a] == "active" for a in open_agents)
    # a drug's orders never overlap: at most one exposure at a time
    for _, chain in med.sort_values("start").groupby("agent"):
        ends = chain["end"].fillna(T.max).to_numpy()[:-1]
        assert (ends <= chain["start"].to_numpy()[1:]).all()
    alone = med[(med.groupby("agent")["agent"].transform("size") == 1) & med["end"].notna()]
    assert ((alone["end"] - alone["start"]) == pd.Timedelta(days=45)).all() and len(alone)
    assert sum(report.notes.get(k, 0) for k in ("end-from-renewal", "end-assumed")) >= 2
