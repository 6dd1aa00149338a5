"""Cohort.conform: one individual's own export laid out on a model's schema."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import twin
from twin.cohort import CohortSchema, ModalitySchema


def labs(rows, info):
    long = pd.DataFrame(rows, columns=["individual", "time", "feature", "value"])
    long["time"] = pd.to_datetime(long["time"])
    return long, info


def training_cohort() -> twin.Cohort:
    long, info = labs(
        [
            ("a", "2020-01-01", "egfr", 80.0),
            ("a", "2020-02-01", "egfr[mL/min]", 95.0),
            ("a", "2020-02-01", "sbp", 120.0),
            ("b", "2020-01-05", "sbp", 130.0),
        ],
        {
            "egfr": {"unit": "mL/min/{1.73_m2}", "code": "33914-3", "system": "http://loinc.org"},
            "egfr[mL/min]": {"unit": "mL/min", "code": "33914-3", "system": "http://loinc.org"},
            "sbp": {"unit": "mm[Hg]", "code": "8480-6", "system": "http://loinc.org"},
        },
    )
    smoking = pd.DataFrame({"smoking": ["never", "former", "current"]}, index=["a", "b", "c"])
    return twin.Cohort.from_tables(
        {"history": smoking}, longitudinal={"labs": long}, feature_info={"labs": info}
    )


def one_patient_export() -> twin.Cohort:
    """Read alone: eGFR only in mL/min (so named without the suffix), no SBP, one smoking level."""
    long, info = labs(
        [("p", "2021-03-01", "egfr", 70.0), ("p", "2021-04-01", "egfr", 72.0)],
        {"egfr": {"unit": "mL/min", "code": "33914-3", "system": "http://loinc.org"}},
    )
    history = pd.DataFrame({"smoking": ["never"], "packs": [0.0]}, index=["p"])
    return twin.Cohort.from_tables(
        {"history": history},
        longitudinal={"labs": long},
        feature_info={"labs": info},
        feature_types={"history": {"smoking": "categorical"}},
    )


def test_conform_matches_by_code_and_unit_recodes_levels_and_adds_absent_features():
    schema = training_cohort().schema
    one = one_patient_export()
    assert one.schema["history"].feature("smoking").levels == ("never", "other")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing of the schema's features is left out
        out = one.conform(schema)
    assert out.schema == schema  # names, units, levels and order are the model's
    values = out.to_long("labs").set_index("feature")["value"]
    # the mL/min readings went to 'egfr[mL/min]', not to the model's mL/min/1.73m2 'egfr'
    np.testing.assert_array_equal(values.loc["egfr[mL/min]"].to_numpy(), [70.0, 72.0])
    assert "egfr" not in values.index and "sbp" not in values.index
    np.testing.assert_array_equal(out.times()[0], one.times()[0])  # same clock
    smoking = schema["history"].feature("smoking")
    code = out.values("history")[0, schema["history"].feature_names.index("smoking")]
    assert smoking.levels[int(code)] == "never"
    report = out.attr_json("twin_conform_report")
    assert report["renamed"] == [["labs", "egfr", "egfr[mL/min]"]]
    assert ["labs", "sbp"] in report["absent"] and ["labs", "egfr"] in report["absent"]
    assert report["dropped"] == [["history", "packs", 1]]


def test_conform_warns_about_values_it_cannot_place():
    schema = training_cohort().schema
    long, info = labs(
        [("q", "2021-01-01", "sbp", 17.0)],
        {"sbp": {"unit": "kPa", "code": "8480-6", "system": "http://loinc.org"}},
    )
    other = twin.Cohort.from_tables(
        {"history": pd.DataFrame({"smoking": ["vaping", "never"]}, index=["q", "r"])},
        longitudinal={"labs": long},
        feature_info={"labs": info},
    )
    with pytest.warns(UserWarning, match="left observed values out") as record:
        out = other.conform(schema)
    message = str(record[0].message)
    assert "labs/sbp: 1 value(s) in unit 'kPa', the schema's is 'mm[Hg]'" in message
    assert "history/smoking: 1 value(s) 'vaping' not among the schema's levels" in message
    assert not out.mask("labs").any()  # the kPa reading is not passed off as mm[Hg]
    assert out.mask("history")[:, 0].tolist() == [False, True]


def test_conform_refuses_a_static_modality_for_a_longitudinal_one():
    schema = training_cohort().schema
    flipped = CohortSchema(
        (ModalitySchema("labs", schema["labs"].features, longitudinal=False),), ()
    )
    with pytest.raises(ValueError, match="'labs' is static in the schema"):
        training_cohort().conform(flipped)


def test_dynamic_twin_from_one_fhir_bundle_equals_the_twin_from_the_cohort():
    """A patient's bundle read alone (lacking a modelled lab) gives the same twin as the
    patient's row of the training-time cohort."""
    from twin.datasets import synthea_demo_path
    from twin.model.dynamic_model import DynamicTwinModel

    cohort = twin.read_fhir(synthea_demo_path(), progress=False)
    feats = {"observations": ["8480-6", "39156-5", "4548-4"]}
    model = DynamicTwinModel(cohort.schema, features=feats, latent_dim=2, agents=[])
    model.fit(cohort.select(list(cohort.individuals[:20])), epochs=5, seed=0, progress=False)
    bundles = sorted(synthea_demo_path().glob("*.json.gz"))
    checked = 0
    for path in bundles[20:]:
        alone = twin.read_fhir(path, progress=False)
        if "4548-4" in alone.schema["observations"].feature_names:
            continue  # has every modelled lab: nothing to conform
        pid = alone.individuals[0]
        mine = model.instantiate(alone)
        theirs = model.instantiate(cohort.select([pid]))
        np.testing.assert_allclose(mine.mean.numpy(), theirs.mean.numpy(), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(mine.cov.numpy(), theirs.cov.numpy(), rtol=1e-6, atol=1e-10)
        assert mine.history.n_observations == theirs.history.n_observations > 0
        checked += 1
    assert checked >= 2


def test_misread_tables_are_caught_when_the_cohort_is_built():
    rng = np.random.default_rng(0)
    ids = [f"s{i:02d}" for i in range(30)]
    numbers = pd.DataFrame(rng.normal(size=(30, 3)), index=ids, columns=["g1", "g2", "g3"])
    # a few stray text cells in a numeric column: masked with a warning, not a categorical
    stray = numbers.astype(object)
    stray.iloc[3, 0], stray.iloc[5, 0] = "n.a.", "1,5"
    with pytest.warns(UserWarning, match=r"'g1' \(2 cell\(s\), e.g. s03: 'n.a.', s05: '1,5'\)"):
        cohort = twin.Cohort.from_tables({"rna": numbers, "prot": stray})
    assert cohort.schema["prot"].feature("g1").type == "continuous"
    assert cohort.mask("prot")[:, 0].sum() == 28
    np.testing.assert_array_equal(cohort.values("prot")[:, 1], numbers["g2"].to_numpy())
    # a declared categorical column is left alone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = twin.Cohort.from_tables(
            {"prot": stray[["g1"]]}, feature_types={"prot": {"g1": "categorical"}}
        )
    assert kept.schema["prot"].feature("g1").type == "categorical"
    # a wrong separator leaves no feature column
    semi = pd.DataFrame(index=[f"{i};0.1;0.2" for i in ids])
    with pytest.raises(ValueError, match="'prot': the table has no feature columns.*sep=';'"):
        twin.Cohort.from_tables({"rna": numbers, "prot": semi})
    # read without index_col: the id column is a feature and the ids are 0, 1, ...
    no_index = numbers.reset_index(names="sample")
    with pytest.warns(UserWarning) as record:
        twin.Cohort.from_tables({"rna": numbers, "prot": no_index})
    messages = " | ".join(str(w.message) for w in record)
    assert "feature 'sample' has 30 distinct values in 30 rows" in messages
    assert "share no individual id" in messages
