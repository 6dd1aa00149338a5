"""Tests of the generic table → Cohort reader (twin.io.tables)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from twin.io.tables import REPORT_ATTR, read_table_cohort


def _batches() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "batch": ["b1", "b1", "b1", "b2", "b2", "b3"],
            "cement": [300, 300, 300, 250, 250, 400],
            "grade": ["A", "A", "A", "B", "B", "A"],
            "age": [7, 28, 90, 7, 28, 28],
            "strength": [20.0, 35.0, 41.0, 15.0, 27.5, 50.0],
            "notes": ["", "x", "", "", "", ""],
        }
    )


def _read(table: pd.DataFrame | str, **kw) -> tuple:
    args = dict(
        id_column="batch",
        modalities={"mix": ["cement", "grade"]},
        longitudinal={"strength": ["strength"]},
        time_column="age",
        types={"grade": "categorical"},
        units={"cement": "kg/m3", "strength": "MPa"},
        nonnegative=["cement", "strength", "age"],
    )
    args.update(kw)
    cohort = read_table_cohort(table, **args)
    return cohort, cohort.attr_json(REPORT_ATTR)


def _reasons(report: dict) -> list[tuple]:
    return [(i["row"], i["column"], i["reason"]) for i in report["issues"]]


def test_clean_dataframe_layout():
    cohort, report = _read(_batches())
    assert list(cohort.individuals) == ["b1", "b2", "b3"]  # order of first appearance
    assert cohort.static_modalities == ["mix"]
    assert cohort.longitudinal_modalities == ["strength"]
    feats = cohort.features("mix").set_index("name")
    assert feats.loc["cement", "unit"] == "kg/m3"
    assert feats.loc["grade", "type"] == "categorical"
    assert list(feats.loc["grade", "levels"]) == ["A", "B"]
    long = cohort.to_long("strength")
    b1 = long[long["individual"] == "b1"].sort_values("t")
    assert b1["t"].tolist() == [7.0, 28.0, 90.0]
    assert b1["value"].tolist() == [20.0, 35.0, 41.0]
    assert np.isnat(cohort.data["visit_time"].values).all()  # no calendar
    assert report["n_rows"] == 6 and report["n_rows_kept"] == 6
    assert report["n_rows_skipped"] == 0 and report["issues"] == []
    assert report["unused_columns"] == ["notes"]
    assert report["time"] == {"column": "age", "calendar": False, "unit": "d", "source_unit": "d"}


def test_csv_bad_rows_reported_with_file_line_column_and_rest_kept(tmp_path):
    path = tmp_path / "batches.csv"
    t = _batches().astype(object)
    t.loc[1, "strength"] = "n/a?"  # line 3: not a number
    t.loc[3, "cement"] = -250  # line 5: negative amount
    t.loc[5, "batch"] = ""  # line 7: no id
    t.to_csv(path, index=False)
    cohort, report = _read(str(path))
    assert sorted(_reasons(report)) == [
        (3, "strength", "non_numeric"),
        (5, "cement", "negative"),
        (7, "batch", "missing_id"),
    ]
    by_reason = {i["reason"]: i for i in report["issues"]}
    msg = by_reason["non_numeric"]["message"]
    assert str(path) in msg and "line 3" in msg and "'strength'" in msg and "'b1'" in msg
    assert "line 5" in by_reason["negative"]["message"]
    assert by_reason["negative"]["value"] in ("-250", -250)
    assert report["counts"] == {"missing_id": 1, "negative": 1, "non_numeric": 1}
    assert report["n_rows_skipped"] == 3 and report["n_rows_kept"] == 3
    # the rest is kept: b1 keeps ages 7 and 90, b2 keeps age 28 and its cement
    assert list(cohort.individuals) == ["b1", "b2"]
    long = cohort.to_long("strength")
    assert sorted(long[long["individual"] == "b1"]["t"]) == [7.0, 90.0]
    cement = dict(zip(cohort.individuals, cohort.values("mix")[:, 0], strict=True))
    assert cement == {"b1": 300.0, "b2": 250.0}


def test_the_import_warning_shows_the_first_problems(caplog):
    t = _batches().astype(object)
    t.loc[:4, "strength"] = ["a", "b", "c", "d", "e"]
    with caplog.at_level(logging.WARNING):
        _read(t)
    text = caplog.text
    assert "skipped 5 of 6 rows (non_numeric 5)" in text
    assert "row 0, column 'strength'" in text and "row 2, column 'strength'" in text
    assert "row 3," not in text and "... and 2 more" in text


def test_all_bad_cells_of_a_row_are_reported_but_the_row_counts_once():
    t = _batches().astype(object)
    t.loc[0, "cement"] = "lots"
    t.loc[0, "strength"] = -1
    _, report = _read(t)
    assert sorted(_reasons(report)) == [(0, "cement", "non_numeric"), (0, "strength", "negative")]
    assert report["n_rows_skipped"] == 1
    assert "row 0" in report["issues"][0]["message"]  # DataFrame rows named by index label


def test_conflicting_duplicates_skipped_identical_copies_kept_once():
    t = _batches()
    extra = pd.DataFrame(
        {
            "batch": ["b2", "b1"],
            "cement": [250, 300],
            "grade": ["B", "A"],
            "age": [7, 28],
            "strength": [99.0, 35.0],  # b2 @ 7 conflicts; b1 @ 28 is a copy of row 1
            "notes": ["", "x"],
        }
    )
    t = pd.concat([t, extra], ignore_index=True)
    cohort, report = _read(t)
    assert sorted(_reasons(report)) == [
        (3, "strength", "conflicting_duplicate"),
        (6, "strength", "conflicting_duplicate"),
    ]
    assert "row 6" in report["issues"][0]["message"] or "row 6" in report["issues"][1]["message"]
    assert report["n_copies_dropped"] == 1
    assert report["copies"] == [{"row": 7, "id": "b1", "copy_of": 1}]
    assert report["n_rows"] == report["n_rows_kept"] + report["n_rows_skipped"] + 1
    long = cohort.to_long("strength")
    b2 = long[long["individual"] == "b2"]
    assert b2["t"].tolist() == [28.0]  # both age-7 rows of b2 skipped, age 28 kept
    b1 = long[long["individual"] == "b1"]
    assert sorted(b1["t"]) == [7.0, 28.0, 90.0]  # the copy added nothing


def test_replicates_mode_keeps_conflicting_rows_as_replicates():
    t = _batches()
    t.loc[len(t)] = ["b2", 250, "B", 7, 17.0, ""]
    cohort, report = _read(t, duplicates="replicates")
    assert report["n_rows_skipped"] == 0 and report["replicate_groups"] == 1
    long = cohort.to_long("strength")
    b2_7 = long[(long["individual"] == "b2") & (long["t"] == 7.0)]
    assert sorted(b2_7["value"]) == [15.0, 17.0]


def test_duplicates_differing_only_by_missing_values_are_merged():
    t = pd.DataFrame(
        {
            "id": ["s1", "s1", "s2"],
            "t": [1, 1, 1],
            "hard": [200.0, None, 210.0],
            "tough": [None, 50.0, 60.0],
        }
    )
    cohort = read_table_cohort(
        t, id_column="id", longitudinal={"props": ["hard", "tough"]}, time_column="t"
    )
    report = cohort.attr_json(REPORT_ATTR)
    assert report["n_rows_merged"] == 1 and report["n_rows_skipped"] == 0
    vals = cohort.values("props")
    assert cohort.n_visits == 1
    np.testing.assert_array_equal(vals[0, 0], [200.0, 50.0])


def test_static_values_must_agree_within_an_individual():
    t = _batches()
    t.loc[2, "cement"] = 310  # b1 gives 300 twice, 310 once: the majority wins
    t.loc[4, "cement"] = 260  # b2 gives 250 once, 260 once: ambiguous, both skipped
    cohort, report = _read(t)
    assert sorted(_reasons(report)) == [
        (2, "cement", "conflicting_static"),
        (3, "cement", "conflicting_static"),
        (4, "cement", "conflicting_static"),
    ]
    msg = next(i["message"] for i in report["issues"] if i["row"] == 2)
    assert "310" in msg and "300" in msg and "row 0, row 1" in msg
    assert list(cohort.individuals) == ["b1", "b3"]
    assert cohort.values("mix")[0, 0] == 300.0


def test_missing_values_are_allowed_and_masked():
    t = _batches()
    t["cement"] = t["cement"].astype(float)
    t.loc[[3, 4], "cement"] = np.nan  # b2: composition not characterised
    t.loc[5, "strength"] = np.nan  # b3: untested
    cohort, report = _read(t)
    assert report["n_rows_skipped"] == 0
    mask = dict(zip(cohort.individuals, cohort.mask("mix")[:, 0], strict=True))
    assert mask == {"b1": True, "b2": False, "b3": True}
    assert cohort.observed("strength").tolist() == [True, True, False]


def test_missing_time_skips_only_rows_with_measurements():
    t = _batches().astype(object)
    t.loc[5, "age"] = None  # b3 has a strength but no age: skipped
    t.loc[len(t)] = ["b4", 320, "A", None, None, ""]  # b4: mix only, no test yet: kept
    cohort, report = _read(t)
    assert _reasons(report) == [(5, "age", "missing_time")]
    assert "b4" in cohort.individuals and "b3" not in cohort.individuals


def test_calendar_times_and_datetime_parsing():
    t = pd.DataFrame(
        {
            "pid": ["p1", "p1", "p2"],
            "date": ["2020-01-01", "2020-01-11", "not a date"],
            "crp": [5.0, 3.0, 1.0],
        }
    )
    cohort = read_table_cohort(
        t, id_column="pid", longitudinal={"labs": ["crp"]}, time_column="date"
    )
    report = cohort.attr_json(REPORT_ATTR)
    assert _reasons(report) == [(2, "date", "bad_time")]
    assert report["time"]["calendar"] is True
    assert cohort.times()[0].tolist() == [0.0, 10.0]


def test_datetime_dataframe_column_and_bool_binary():
    t = pd.DataFrame(
        {
            "pid": ["a", "a", "b"],
            "date": pd.to_datetime(["2020-01-01", "2020-01-05", None]),
            "crp": [1.0, 2.0, None],
            "smoker": [True, True, False],
        }
    )
    cohort = read_table_cohort(
        t,
        id_column="pid",
        modalities={"m": ["smoker"]},
        types={"smoker": "binary"},
        longitudinal={"labs": ["crp"]},
        time_column="date",
    )
    assert cohort.attr_json(REPORT_ATTR)["counts"] == {}
    assert cohort.times()[0].tolist() == [0.0, 4.0]
    assert cohort.values("m")[:, 0].tolist() == [1.0, 0.0]  # b: no time, no value, kept
    assert not cohort.observed("labs")[1]


def test_time_unit_conversion_and_generated_ids():
    t = pd.DataFrame({"h": [24, 48], "x": [1.0, 2.0]})
    cohort = read_table_cohort(
        t,
        id_column=None,
        id_prefix="spec-",
        longitudinal={"m": ["x"]},
        time_column="h",
        time_unit="h",
    )
    assert list(cohort.individuals) == ["spec-1", "spec-2"]
    assert cohort.times()[:, 0].tolist() == [1.0, 2.0]


def test_derived_features_rename_and_bounds():
    t = pd.DataFrame({"id": ["a", "b", "c"], "W": [180, 150, 160], "C": [360, 0, 400]})
    cohort = read_table_cohort(
        t,
        id_column="id",
        modalities={"mix": ["W", "C"]},
        rename={"W": "water", "C": "cement"},
        units={"W": "kg/m3", "C": "kg/m3", "wc": "1"},
        bounds={"C": (None, 380)},
        derived={"mix": {"wc": lambda m: m["water"] / m["cement"]}},
    )
    report = cohort.attr_json(REPORT_ATTR)
    assert _reasons(report) == [(2, "C", "out_of_range")]
    feats = cohort.features("mix").set_index("name")
    assert list(feats.index) == ["water", "cement", "wc"]
    assert feats.loc["water", "display"] == "W"  # the column header
    assert feats.loc["wc", "unit"] == "1"
    wc = cohort.values("mix")[:, 2]
    assert wc[0] == pytest.approx(0.5)
    assert np.isnan(wc[1]) and not cohort.mask("mix")[1, 2]  # 150 / 0: missing, not inf
    assert report["derived"] == {"mix": ["wc"]}


def test_binary_and_count_types_checked_per_row():
    t = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "flag": ["1", "yes", "2", "0"], "n": [1, 2, 3, 1.5]}
    )
    cohort = read_table_cohort(
        t, id_column="id", modalities={"m": ["flag", "n"]}, types={"flag": "binary", "n": "count"}
    )
    report = cohort.attr_json(REPORT_ATTR)
    assert sorted(_reasons(report)) == [(2, "flag", "not_binary"), (3, "n", "not_count")]
    assert cohort.values("m").tolist() == [[1.0, 1.0], [1.0, 2.0]]


def test_covariates_per_individual():
    t = _batches()
    t["site"] = ["lab1", "lab1", "lab1", "lab2", "lab2", "lab1"]
    cohort, _ = _read(t, covariates=["site"])
    assert cohort.covariates["site"].tolist() == ["lab1", "lab2", "lab1"]


def test_max_issues_truncates_list_not_counts():
    t = _batches().astype(object)
    t["strength"] = "bad"
    _, report = _read(t, max_issues=2)
    assert len(report["issues"]) == 2 and report["counts"] == {"non_numeric": 6}
    assert report["issues_truncated"] is True


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"modalities": {"mix": ["cement", "nope"]}}, r"missing column\(s\) \['nope'\]"),
        ({"modalities": {"mix": ["cement", "strength"]}}, "used twice"),
        ({"time_column": None}, "need a time_column"),
        ({"time_unit": "fortnights"}, "unknown time_unit"),
        ({"types": {"grade": "ordinal"}}, "unknown type"),
        ({"duplicates": "first"}, "duplicates must be"),
    ],
)
def test_configuration_errors_are_clear(kw, match):
    with pytest.raises(ValueError, match=match):
        _read(_batches(), **kw)


def test_missing_file_and_missing_column_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        _read(str(tmp_path / "absent.csv"))
    path = tmp_path / "t.csv"
    _batches().drop(columns="cement").to_csv(path, index=False)
    with pytest.raises(ValueError, match="t.csv: missing column"):
        _read(str(path))
    semicolons = tmp_path / "semicolons.csv"
    _batches().to_csv(semicolons, index=False, sep=";")
    with pytest.raises(
        ValueError,
        # the hint comes first, before the column lists
        match=r"semicolons.csv: one column .* ';'-separated\? Pass csv_options=\{'sep': ';'\}; missing",
    ):
        _read(str(semicolons))
    assert _read(str(semicolons), csv_options={"sep": ";"})[1]["n_rows_kept"] == len(_batches())


def test_blank_lines_keep_line_numbers(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("batch,cement,grade,age,strength\nb1,300,A,7,20\n\nb1,300,A,28,oops\n")
    _, report = _read(str(path))
    assert _reasons(report) == [(4, "strength", "non_numeric")]
    assert report["n_blank_rows"] == 1 and report["n_rows"] == 2
