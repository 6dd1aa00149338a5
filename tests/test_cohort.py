"""Tests of the Cohort data model: construction, masks, visits, subsetting, persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import twin
from twin.cohort import INTERVENTION_COLUMNS, Cohort, CohortSchema


@pytest.fixture
def cohort() -> Cohort:
    mrna = pd.DataFrame(
        {"TP53": [0.1, 0.2, 0.3, np.nan], "BRCA1": [1.0, np.nan, 3.0, 4.0]},
        index=["p1", "p2", "p3", "p4"],
    )
    clinical = pd.DataFrame(
        {"smoker": ["never", "former", None], "diabetic": [True, False, True]},
        index=["p2", "p3", "p4"],
    )
    labs = pd.DataFrame(
        {
            "individual": ["p1", "p1", "p1", "p2", "p2", "p3"],
            "time": pd.to_datetime(
                ["2020-01-01", "2020-01-01", "2020-03-01", "2019-05-01", "2019-05-01", "2021-01-01"]
            ),
            "feature": ["hba1c", "hba1c", "sbp", "sbp", "dbp", "hba1c"],
            "value": [6.1, 6.3, 121.0, 131.0, 82.0, 5.4],
        }
    )
    interventions = pd.DataFrame(
        {
            "individual": ["p1", "p3"],
            "agent": ["860975", "197361"],
            "system": ["http://www.nlm.nih.gov/research/umls/rxnorm"] * 2,
            "kind": ["medication", "medication"],
            "start": pd.to_datetime(["2020-01-15", "2021-02-01"]),
            "dose": [500.0, 5.0],
            "unit": ["mg", "mg"],
            "interval": [1.0, np.nan],
        }
    )
    covariates = pd.DataFrame(
        {"sex": ["female", "male", "female", "male"], "age": [50.0, 61.0, 70.0, 45.0]},
        index=["p1", "p2", "p3", "p4"],
    )
    return Cohort.from_tables(
        {"mrna": mrna, "clinical": clinical},
        longitudinal={"labs": labs},
        covariates=covariates,
        interventions=interventions,
        feature_info={
            "labs": {"sbp": {"unit": "mm[Hg]", "system": "http://loinc.org", "code": "8480-6"}}
        },
    )


def test_static_values_and_masks(cohort: Cohort) -> None:
    assert list(cohort.individuals) == ["p1", "p2", "p3", "p4"]
    np.testing.assert_array_equal(
        cohort.mask("mrna"), [[True, True], [True, False], [True, True], [False, True]]
    )
    # individuals absent from a table have the whole modality masked, values NaN (no zero padding)
    assert not cohort.mask("clinical")[0].any()
    assert np.isnan(cohort.values("clinical")[0]).all()
    np.testing.assert_array_equal(cohort.observed("clinical"), [False, True, True, True])


def test_feature_types_and_categorical_codes(cohort: Cohort) -> None:
    schema = cohort.schema["clinical"]
    smoker = schema.feature("smoker")
    assert smoker.type == "categorical"
    assert smoker.levels == ("former", "never")
    assert schema.feature("diabetic").type == "binary"
    codes = cohort.values("clinical")[:, 0]
    assert codes[1] == smoker.levels.index("never")
    assert codes[2] == smoker.levels.index("former")
    assert np.isnan(codes[3])  # None is missing, not a level


def test_longitudinal_visits_allow_repeats_at_one_time(cohort: Cohort) -> None:
    labs = cohort.values("labs")
    feats = list(cohort.data["labs_feature"].values)
    hba1c = feats.index("hba1c")
    # two HbA1c values at the same time open two visits at t=0
    np.testing.assert_array_equal(cohort.times()[0, :3], [0.0, 0.0, 60.0])
    assert sorted(labs[0, :2, hba1c].tolist()) == [6.1, 6.3]
    # SBP and DBP at one time share a visit
    assert cohort.data["visit_mask"].values[1].sum() == 1
    assert cohort.mask("labs")[1, 0].sum() == 2
    # absolute dates and the reference time
    assert cohort.reference_time["p2"] == pd.Timestamp("2019-05-01")
    assert cohort.data["visit_time"].values[0, 2] == np.datetime64("2020-03-01")
    # p4 has no labs at all: no visits
    assert not cohort.data["visit_mask"].values[3].any()


def test_feature_metadata(cohort: Cohort) -> None:
    sbp = cohort.schema["labs"].feature("sbp")
    assert (sbp.unit, sbp.system, sbp.code) == ("mm[Hg]", "http://loinc.org", "8480-6")
    table = cohort.features("labs")
    assert set(table.columns) >= {"name", "type", "unit", "system", "code", "display"}


def test_interventions_relative_times(cohort: Cohort) -> None:
    iv = cohort.interventions
    assert list(iv.columns) == list(INTERVENTION_COLUMNS)
    p1 = iv[iv["individual"] == "p1"].iloc[0]
    assert p1["start_t"] == 14.0  # 2020-01-15 minus p1's first observation 2020-01-01
    assert np.isnan(p1["end_t"]) and pd.isna(p1["end"])
    assert p1["dose"] == 500.0 and p1["unit"] == "mg" and p1["interval"] == 1.0


def test_save_load_round_trip_is_lossless(cohort: Cohort, tmp_path) -> None:
    path = cohort.save(tmp_path / "c.nc")
    loaded = Cohort.load(path)
    xr.testing.assert_identical(loaded.data, cohort.data)
    assert loaded.schema == cohort.schema
    assert loaded.schema.hash() == cohort.schema.hash()
    pd.testing.assert_frame_equal(loaded.interventions, cohort.interventions)
    assert loaded.mask("mrna").dtype == bool


def test_save_refuses_to_overwrite(cohort: Cohort, tmp_path) -> None:
    path = cohort.save(tmp_path / "c.nc")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        cohort.select(["p1"]).save(path)
    assert path.read_bytes() == before
    cohort.select(["p1"]).save(path, overwrite=True)
    assert len(Cohort.load(path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.nc"]  # no temp files left


def test_load_errors_are_clear(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no cohort file"):
        Cohort.load(tmp_path / "missing.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(ValueError, match="bad.nc"):
        Cohort.load(bad)
    # a NetCDF file that is not a cohort (a simulation result) is named as such
    result = xr.Dataset({"value": (("scenario", "time"), np.zeros((2, 3)))})
    result.to_netcdf(tmp_path / "result.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match=r"not a twin cohort.*'twin simulate' result"):
        Cohort.load(tmp_path / "result.nc")


def test_select_individuals_modalities_features(cohort: Cohort) -> None:
    sub = cohort.select(["p3", "p1"])
    assert list(sub.individuals) == ["p3", "p1"]
    assert set(sub.interventions["individual"]) == {"p1", "p3"}
    np.testing.assert_array_equal(sub.values("mrna")[0], cohort.values("mrna")[2])
    only = cohort.select(modalities=["mrna"])
    assert only.modalities == ["mrna"] and "labs" not in only.data
    feats = cohort.select(features={"mrna": ["BRCA1"]})
    assert feats.values("mrna").shape == (4, 1)
    by_mask = cohort.select(np.array([False, True, False, False]))
    assert list(by_mask.individuals) == ["p2"]
    with pytest.raises(KeyError, match="not in cohort"):
        cohort.select(["nobody"])
    with pytest.raises(KeyError, match="no modality"):
        cohort.values("proteins")


def test_select_trims_unused_visits(cohort: Cohort) -> None:
    sub = cohort.select(["p2", "p3"])
    assert sub.n_visits == 1  # p1's three visits are gone


def test_split_and_kfold_are_disjoint_and_seeded(cohort: Cohort) -> None:
    a, b = cohort.split((0.5, 0.5), seed=3)
    assert set(a.individuals).isdisjoint(b.individuals)
    assert set(a.individuals) | set(b.individuals) == set(cohort.individuals)
    a2, _ = cohort.split((0.5, 0.5), seed=3)
    assert list(a.individuals) == list(a2.individuals)
    tests = [set(test.individuals) for _, test in cohort.kfold(2, seed=0)]
    assert tests[0].isdisjoint(tests[1]) and tests[0] | tests[1] == set(cohort.individuals)
    with pytest.raises(ValueError, match="sum to 1"):
        cohort.split((0.5, 0.6))


def test_hide_masks_values_without_touching_the_original(cohort: Cohort) -> None:
    hidden = cohort.hide("mrna", individuals=["p1", "p3"])
    assert not hidden.mask("mrna")[[0, 2]].any()
    assert np.isnan(hidden.values("mrna")[[0, 2]]).all()
    np.testing.assert_array_equal(hidden.mask("mrna")[1], cohort.mask("mrna")[1])
    assert cohort.mask("mrna")[0].all()  # original untouched
    one = cohort.hide("mrna", features=["TP53"])
    assert not one.mask("mrna")[:, 0].any() and one.mask("mrna")[2, 1]


def test_summarise_longitudinal_to_static(cohort: Cohort) -> None:
    feats = list(cohort.data["labs_feature"].values)
    last = cohort.summarise("labs", how="last")
    assert "labs_last" in last.static_modalities
    v = last.values("labs_last")
    assert v[0, feats.index("sbp")] == 121.0
    assert v[2, feats.index("hba1c")] == 5.4
    assert not last.mask("labs_last")[3].any()
    early = cohort.summarise("labs", how="last", at=0.0)
    assert np.isnan(early.values("labs_last")[0, feats.index("sbp")])
    count = cohort.summarise("labs", how="count")
    assert count.values("labs_count")[0, feats.index("hba1c")] == 2
    assert count.schema["labs_count"].features[0].type == "count"
    mean = cohort.summarise("labs", how="mean")
    assert mean.values("labs_mean")[0, feats.index("hba1c")] == pytest.approx(6.2)


def test_merge_adds_modalities_over_union_of_individuals(cohort: Cohort) -> None:
    prot = pd.DataFrame({"ERBB2": [2.0, 3.0]}, index=["p2", "p9"])
    other = Cohort.from_tables({"protein": prot})
    merged = cohort.merge(other)
    assert list(merged.individuals) == ["p1", "p2", "p3", "p4", "p9"]
    assert merged.modalities == ["mrna", "clinical", "labs", "protein"]
    np.testing.assert_array_equal(merged.mask("protein")[:, 0], [False, True, False, False, True])
    assert not merged.mask("mrna")[4].any()
    np.testing.assert_array_equal(merged.values("labs")[:4], cohort.values("labs"))
    assert len(merged.interventions) == 2
    with pytest.raises(ValueError, match="both cohorts hold modalities"):
        merged.merge(other)


def test_repr_is_readable(cohort: Cohort) -> None:
    text = repr(cohort)
    assert "4 individuals" in text
    assert "mrna" in text and "2 features" in text
    assert "interventions: 2" in text
    assert "2019-05-01" in text


def test_schema_json_hash_and_diff(cohort: Cohort) -> None:
    schema = cohort.schema
    again = CohortSchema.from_json(schema.to_json())
    assert again == schema and again.hash() == schema.hash()
    other = cohort.select(features={"mrna": ["TP53"]}).schema
    assert other.hash() != schema.hash()
    diff = schema.diff(other)
    assert any("BRCA1" in d for d in diff)


def test_bad_tables_give_clear_errors() -> None:
    dup = pd.DataFrame({"a": [1.0, 2.0]}, index=["x", "x"])
    with pytest.raises(ValueError, match="duplicate individual ids"):
        Cohort.from_tables({"mrna": dup})
    with pytest.raises(ValueError, match="reserved"):
        Cohort.from_tables({"visit_x": pd.DataFrame({"a": [1.0]}, index=["x"])})
    with pytest.raises(ValueError, match="binary values must be 0/1"):
        Cohort.from_tables(
            {"m": pd.DataFrame({"a": [2.0]}, index=["x"])}, feature_types={"m": {"a": "binary"}}
        )
    with pytest.raises(ValueError, match="lacks columns"):
        Cohort.from_tables(longitudinal={"labs": pd.DataFrame({"individual": ["x"]})})
    with pytest.raises(ValueError, match="unknown columns"):
        Cohort.from_tables(
            {"m": pd.DataFrame({"a": [1.0]}, index=["x"])},
            interventions=pd.DataFrame({"individual": ["x"], "agent": ["a"], "dosage": [1]}),
        )


def test_numeric_time_axis_for_materials() -> None:
    strength = pd.DataFrame(
        {
            "individual": ["mix1", "mix1", "mix2"],
            "time": [7, 28, 28],
            "feature": "fc",
            "value": [20.0, 35.0, 41.0],
        }
    )
    c = Cohort.from_tables(longitudinal={"strength": strength})
    np.testing.assert_array_equal(c.times(), [[7.0, 28.0], [28.0, np.nan]])
    assert np.isnat(c.data["visit_time"].values).all()
    assert "t = 7 to 28 days" in repr(c)


def test_top_level_exports() -> None:
    assert twin.Cohort is Cohort
    assert isinstance(twin.__version__, str)


def test_non_numeric_value_in_numeric_feature_is_named() -> None:
    table = pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0]}, index=["x", "y"]).astype(object)
    table.loc["y", "a"] = "n/a"
    with pytest.raises(ValueError, match=r"modality 'm' feature 'a'.*'n/a'"):
        Cohort.from_tables(
            {"m": table}, feature_types={"m": {"a": "continuous", "b": "continuous"}}
        )


def test_lazy_top_level_names_resolve() -> None:
    for name in twin._LAZY:
        assert getattr(twin, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        twin.nope  # noqa: B018
