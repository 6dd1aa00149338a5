"""FeatureSelection rules and the IngestReport's text and dict forms."""

from __future__ import annotations

import json

import pytest

from twin.io.fhir import FeatureSelection, IngestReport, SkippedEntry


def test_feature_selection_rules():
    shares = {"a": 0.5, "b": 0.01, "c[mL/min]": 0.01, "d": 0.9}
    codes = {"a": "a", "b": "b", "c[mL/min]": "c", "d": "d"}
    kept, dropped = FeatureSelection(min_share=0.05).decide(shares, codes)
    assert kept == ["a", "d"] and set(dropped) == {"b", "c[mL/min]"}
    assert "1.0% of individuals" in dropped["b"]
    kept, dropped = FeatureSelection(include=["c"], exclude=["d"]).decide(shares, codes)
    assert kept == ["a", "c[mL/min]"] and dropped["d"] == "excluded"
    kept, dropped = FeatureSelection(max_levels=3).decide({"t": 1.0}, {"t": "t"}, {"t": 4})
    assert kept == [] and "max_levels" in dropped["t"]
    assert FeatureSelection.only(["b"]).decide(shares, codes)[0] == ["b"]


def test_feature_selection_checks_its_arguments():
    with pytest.raises(ValueError, match="min_share"):
        FeatureSelection(min_share=1.5)
    with pytest.raises(TypeError, match="list of codes"):
        FeatureSelection(include="8480-6")


def test_report_lists_locations_and_round_trips():
    report = IngestReport(source="data/", files=2, max_details=1)
    report.skip(SkippedEntry("a.json", 3, "Observation", "o1", "missing-unit", "no unit"))
    report.skip(SkippedEntry("Observation.ndjson", 4, "Observation", "o2", "invalid-json", "bad"))
    report.skip(SkippedEntry("b.json.gz", -1, "", "", "unreadable-file", "truncated gzip"))
    assert report.n_skipped == 3 and len(report.skipped) == 1 and report.details_omitted == 2
    assert str(report.skipped[0]) == "a.json entry 3: Observation/o1: no unit [missing-unit]"
    assert SkippedEntry("Observation.ndjson", 4, "", "", "x", "y").location.endswith("line 5")
    text = str(report)
    assert "skipped 3" in text and "missing-unit 1" in text and "a.json entry 3" in text
    back = IngestReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report
    assert list(report.skipped_table()["resource_id"]) == ["o1"]
