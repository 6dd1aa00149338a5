"""Tests of the materials domain: concrete and steel readers, the process graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import twin
from twin.materials import (
    GRAPH_ATTR,
    ProcessGraph,
    concrete_graph,
    read_concrete,
    read_nims,
    steel_graph,
)

DATA = Path(__file__).parent / "data" / "materials"
CONCRETE = DATA / "concrete_excerpt.csv"
NIMS_LIKE = DATA / "nims_like_synthetic.csv"


def _report(cohort: twin.Cohort) -> dict:
    return cohort.attr_json("twin_table_report")


# ---------------------------------------------------------------------- concrete
@pytest.fixture(scope="module")
def concrete() -> twin.Cohort:
    return read_concrete(CONCRETE)


def test_concrete_individuals_are_distinct_mixes(concrete):
    raw = pd.read_csv(CONCRETE)
    assert len(raw) == 40
    assert sorted(concrete.individuals) == sorted(raw["mix_id"].unique())
    assert len(concrete) == 14
    assert concrete.static_modalities == ["mix"]
    assert concrete.longitudinal_modalities == ["strength"]
    report = _report(concrete)
    assert report["n_rows_skipped"] == 0
    assert report["copies"] == [{"row": 32, "id": "mix-0a1bddc152", "copy_of": 31}]


def test_concrete_strength_at_the_right_ages(concrete):
    long = concrete.to_long("strength")
    mix = long[long["individual"] == "mix-044ffe49ce"].sort_values("t")
    assert mix["t"].tolist() == [3.0, 14.0, 28.0, 56.0, 100.0]
    # excerpt lines 34-38, verbatim
    expected = [10.38350856, 22.13907436, 22.83544512, 27.66177712, 34.55653712]
    np.testing.assert_allclose(mix["value"].to_numpy(dtype=float), expected, rtol=0, atol=1e-12)
    assert np.isnat(mix["time"]).all()  # an age axis, no calendar
    copy = long[long["individual"] == "mix-0a1bddc152"]
    assert copy["t"].tolist() == [3.0, 7.0]  # the repeated age-3 record is counted once


def test_concrete_derived_ratios_by_hand(concrete):
    # excerpt line 34: cement 233.81, slag 0.0, fly ash 94.58, water 197.89
    feats = list(concrete.data["mix_feature"].values)
    row = list(concrete.individuals).index("mix-044ffe49ce")
    vals = dict(zip(feats, concrete.values("mix")[row], strict=True))
    assert vals["cement"] == 233.81 and vals["water"] == 197.89
    assert vals["binder"] == pytest.approx(233.81 + 0.0 + 94.58)
    assert vals["water_cement_ratio"] == pytest.approx(197.89 / 233.81)
    assert vals["water_cement_ratio"] == pytest.approx(0.846371, abs=1e-6)
    assert vals["water_binder_ratio"] == pytest.approx(197.89 / 328.39)
    assert _report(concrete)["derived"] == {
        "mix": ["binder", "water_cement_ratio", "water_binder_ratio"]
    }


def test_concrete_units_in_feature_metadata(concrete):
    mix = concrete.features("mix").set_index("name")
    assert (mix.loc[["cement", "water", "fine_aggregate", "binder"], "unit"] == "kg/m3").all()
    assert mix.loc["water_cement_ratio", "unit"] == "1"
    assert "binder" in mix.loc["water_binder_ratio", "display"].lower()
    strength = concrete.features("strength").set_index("name")
    assert strength.loc["compressive_strength", "unit"] == "MPa"
    assert (mix["type"] == "continuous").all()


def _corrupt(tmp_path: Path) -> Path:
    lines = CONCRETE.read_text().splitlines()
    # line numbers of the excerpt (header = line 1)
    lines[2 - 1] = lines[2 - 1].rsplit(",", 1)[0] + ",forty"  # non-numeric strength
    cells = lines[35 - 1].split(",")
    cells[1] = "-233.81"  # negative cement in one row of mix-044ffe49ce
    lines[35 - 1] = ",".join(cells)
    cells = lines[39 - 1].split(",")  # mix-6607705f0f at 3 days, another strength
    cells[-1] = "19.5"
    lines.append(",".join(cells))  # line 42
    path = tmp_path / "concrete_bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_concrete_bad_rows_reported_and_rest_kept(tmp_path):
    path = _corrupt(tmp_path)
    cohort = read_concrete(path)
    report = _report(cohort)
    got = sorted((i["row"], i["column"], i["reason"]) for i in report["issues"])
    assert got == [
        (2, "compressive_strength_mpa", "non_numeric"),
        (35, "cement", "negative"),
        (39, "compressive_strength_mpa", "conflicting_duplicate"),
        (42, "compressive_strength_mpa", "conflicting_duplicate"),
    ]
    for issue in report["issues"]:
        assert issue["message"].startswith(f"{path}: line {issue['row']}, column ")
    dup = next(i for i in report["issues"] if i["row"] == 42)
    assert "line 39" in dup["message"] and "age_days 3" in dup["message"]
    assert report["n_rows_skipped"] == 4 and report["n_rows_kept"] == 40 + 1 - 4 - 1
    # the rest is kept
    assert len(cohort) == 14
    long = cohort.to_long("strength")
    assert sorted(long[long["individual"] == "mix-044ffe49ce"]["t"]) == [3.0, 28.0, 56.0, 100.0]
    assert sorted(long[long["individual"] == "mix-6607705f0f"]["t"]) == [14.0, 28.0]
    row = list(cohort.individuals).index("mix-044ffe49ce")
    assert cohort.values("mix")[row, 0] == 233.81  # the negative row did not leak in
    # the mix of line 2 keeps its other age (line 3) and its composition
    assert long[long["individual"] == "mix-55e4bb29c3"]["t"].tolist() == [365.0]


def test_concrete_replicates_option(tmp_path):
    cohort = read_concrete(_corrupt(tmp_path), duplicates="replicates")
    long = cohort.to_long("strength")
    at3 = long[(long["individual"] == "mix-6607705f0f") & (long["t"] == 3.0)]
    assert sorted(at3["value"]) == pytest.approx([12.47262084, 19.5])
    assert _report(cohort)["replicate_groups"] == 1


def test_concrete_missing_column_names_the_file(tmp_path):
    path = tmp_path / "no_water.csv"
    pd.read_csv(CONCRETE).drop(columns="water").to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"no_water\.csv: missing column\(s\) \['water'\]"):
        read_concrete(path)


def test_materials_cohort_save_load_round_trip(concrete, tmp_path):
    path = concrete.save(tmp_path / "concrete.nc")
    back = twin.Cohort.load(path)
    assert back.schema == concrete.schema
    assert back.schema.hash() == concrete.schema.hash()
    np.testing.assert_array_equal(back.mask("strength"), concrete.mask("strength"))
    np.testing.assert_array_equal(back.values("mix"), concrete.values("mix"))
    np.testing.assert_array_equal(back.times(), concrete.times())
    assert ProcessGraph.from_cohort(back) == concrete_graph()
    assert back.attr_json("twin_table_report") == _report(concrete)
    assert back.features("mix").set_index("name").loc["cement", "unit"] == "kg/m3"


# ---------------------------------------------------------------------- steel
@pytest.fixture(scope="module")
def steel() -> twin.Cohort:
    return read_nims(NIMS_LIKE)


def test_nims_like_mapping(steel):
    raw = pd.read_csv(NIMS_LIKE)
    assert len(steel) == len(raw) == 12
    assert list(steel.individuals[:2]) == ["steel-01", "steel-02"]
    assert steel.static_modalities == ["composition", "processing", "inclusions", "properties"]
    assert steel.longitudinal_modalities == []
    feats = {m: steel.features(m).set_index("name") for m in steel.modalities}
    assert list(feats["composition"].index) == ["C", "Si", "Mn", "P", "S", "Ni", "Cr", "Cu", "Mo"]
    assert (feats["composition"]["unit"] == "wt%").all()
    assert list(feats["processing"].index) == [
        "normalizing_temperature",
        "quenching_temperature",
        "tempering_temperature",
        "reduction_ratio",
    ]
    assert feats["processing"].loc["tempering_temperature", "unit"] == "Cel"
    assert feats["processing"].loc["reduction_ratio", "unit"] == "1"
    assert (feats["inclusions"]["unit"] == "%").all()
    props = feats["properties"]
    assert props.loc["fatigue_strength", "unit"] == "MPa"
    assert props.loc["tensile_strength", "unit"] == "MPa"
    assert props.loc["fracture_strength", "unit"] == "MPa"
    assert props.loc["hardness", "unit"] == "HV"
    # values land in the right place: row 3 (line 4) of the CSV
    i = 3
    np.testing.assert_allclose(
        steel.values("processing")[i],
        raw.loc[
            i, ["Normalized Temperature", "Quenching Temperature", "Temperaing Temperature", "RR"]
        ].to_numpy(float),
    )
    assert steel.values("properties")[i, 0] == raw.loc[i, "Fatigue Strength (10E7 Cycles)"]
    assert steel.values("composition")[i, 0] == raw.loc[i, "C"]


def test_nims_missing_characterisation_allowed(steel):
    # line 6 of the synthetic file has empty dA, dB, dC
    assert steel.observed("inclusions").tolist() == [True] * 4 + [False] + [True] * 7
    assert steel.observed("properties").all()
    assert _report(steel)["n_rows_skipped"] == 0


def test_nims_bad_rows(tmp_path):
    raw = pd.read_csv(NIMS_LIKE).astype(object)
    raw.loc[1, "Hardness"] = "HV 310"  # line 3
    raw.loc[2, "C"] = 140  # line 4: above 100 wt%
    raw.loc[6, "Tensile Strength"] = -650  # line 8
    path = tmp_path / "nims_bad.csv"
    raw.to_csv(path, index=False)
    cohort = read_nims(path)
    got = sorted((i["row"], i["column"], i["reason"]) for i in _report(cohort)["issues"])
    assert got == [
        (3, "Hardness", "non_numeric"),
        (4, "C", "out_of_range"),
        (8, "Tensile Strength", "negative"),
    ]
    assert len(cohort) == 9
    assert "steel-03" not in cohort.individuals and "steel-04" in cohort.individuals


def test_nims_dataframe_and_corrected_spelling():
    raw = pd.read_csv(NIMS_LIKE).rename(columns={"Temperaing Temperature": "Tempering Temperature"})
    cohort = read_nims(raw)
    assert cohort.values("processing")[0, 2] == raw.loc[0, "Tempering Temperature"]
    with pytest.raises(ValueError, match=r"<DataFrame>: missing NIMS column\(s\) \['RR'\]"):
        read_nims(raw.drop(columns="RR"))


def test_steel_graph_travels_with_the_cohort(steel):
    graph = ProcessGraph.from_cohort(steel)
    assert graph == steel_graph()
    graph.validate_against(steel)


# ---------------------------------------------------------------------- graph
def test_graph_queries():
    g = steel_graph()
    assert g.roles == {
        "composition": "composition",
        "processing": "processing",
        "inclusions": "structure",
        "properties": "property",
    }
    assert g.informs("composition", "properties")
    assert g.informs("processing", "inclusions", direct=True)
    assert not g.informs("properties", "composition")
    assert not g.informs("composition", "processing")
    assert not g.informs("inclusions", "inclusions")
    assert g.upstream("properties") == ["composition", "processing", "inclusions"]
    assert g.upstream("inclusions") == ["composition", "processing"]
    assert g.upstream("composition") == []
    assert g.downstream("processing") == ["inclusions", "properties"]
    assert g.downstream("inclusions", direct=True) == ["properties"]
    assert g.with_role("structure") == ["inclusions"]
    with pytest.raises(KeyError, match="no modality 'grain'"):
        g.upstream("grain")
    c = concrete_graph()
    assert c.informs("mix", "strength") and c.time_axis == "age"
    assert c.upstream("strength") == ["mix"]


def test_graph_transitive_informs_and_subgraph():
    g = ProcessGraph(
        {"chem": "composition", "heat": "processing", "grains": "structure", "yield": "property"},
        [("chem", "grains"), ("heat", "grains"), ("grains", "yield")],
    )
    assert g.informs("chem", "yield") and not g.informs("chem", "yield", direct=True)
    sub = g.subgraph(["chem", "yield"])
    assert sub.edges == [("chem", "yield")]  # the path through grains becomes an edge


def test_validate_against_errors():
    g = steel_graph()
    schema = read_nims(NIMS_LIKE).select(modalities=["composition", "processing", "properties"])
    with pytest.raises(ValueError, match=r"in the graph but not in the cohort: \['inclusions'\]"):
        g.validate_against(schema.schema)
    extra = ["composition", "processing", "inclusions", "properties", "microscopy"]
    with pytest.raises(ValueError, match=r"in the cohort but not in the graph: \['microscopy'\]"):
        g.validate_against(extra)
    with pytest.raises(ValueError, match="not in the cohort.*not in the graph"):
        concrete_graph().validate_against(["mix", "slump"])
    g.subgraph(["composition", "processing", "properties"]).validate_against(schema)
    with pytest.raises(ValueError, match="graph does not match"):
        g.attach(schema)


@pytest.mark.parametrize(
    ("roles", "edges", "match"),
    [
        ({"a": "composition", "b": "texture"}, [], "unknown role 'texture'"),
        ({"a": "composition"}, [("a", "b")], "'b', which is not a modality"),
        ({"a": "property", "b": "processing"}, [("a", "b")], "goes against"),
        ({"a": "structure", "b": "structure"}, [("a", "b"), ("b", "a")], "cycle"),
        ({"a": "structure"}, [("a", "a")], "cannot inform itself"),
    ],
)
def test_graph_construction_errors(roles, edges, match):
    with pytest.raises(ValueError, match=match):
        ProcessGraph(roles, edges)


def test_graph_dict_round_trip_is_json_friendly():
    g = steel_graph()
    d = json.loads(json.dumps(g.to_dict()))
    back = ProcessGraph.from_dict(d)
    assert back == g and back.to_dict() == g.to_dict()
    assert d["nodes"][2] == {
        "name": "inclusions",
        "role": "structure",
        "description": g.graph.nodes["inclusions"]["description"],
    }
    assert ProcessGraph.from_dict(concrete_graph().to_dict()).time_axis == "age"
    with pytest.raises(ValueError, match="not a process graph"):
        ProcessGraph.from_dict({"edges": []})


def test_graph_attach_to_a_plain_cohort():
    t = pd.DataFrame({"cement": [300.0]}, index=["m1"])
    cohort = twin.Cohort.from_tables(
        {"mix": t},
        longitudinal={
            "strength": pd.DataFrame(
                {"individual": ["m1"], "time": [28.0], "feature": ["fc"], "value": [30.0]}
            )
        },
    )
    with pytest.raises(KeyError, match=GRAPH_ATTR):
        ProcessGraph.from_cohort(cohort)
    attached = concrete_graph().attach(cohort)
    assert ProcessGraph.from_cohort(attached) == concrete_graph()
    assert GRAPH_ATTR not in cohort.data.attrs  # the original is untouched


def test_graph_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = steel_graph().plot()
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == ["composition", "inclusions", "processing", "properties"]
    assert "may inform" in ax.get_title()
    plt.close(ax.figure)
    from twin.materials.graph import ProcessGraph, _wrap

    assert _wrap("strength_at_age") == "strength_at\n_age" and _wrap("mix") == "mix"
    # one node per stage (no height to the layout): every name is drawn inside the figure
    chain = ProcessGraph(
        {"mix_design": "composition", "pore_structure": "structure", "strength_at_age": "property"},
        [("mix_design", "pore_structure"), ("pore_structure", "strength_at_age")],
    )
    for graph in (chain, steel_graph()):
        ax = graph.plot()
        fig = ax.figure
        fig.canvas.draw()
        box = fig.bbox
        for text in ax.texts:
            ext = text.get_window_extent()
            inside = box.x0 <= ext.x0 and ext.x1 <= box.x1 and box.y0 <= ext.y0 and ext.y1 <= box.y1
            assert inside, (text.get_text(), ext, box)
        plt.close(fig)


def test_the_readers_follow_their_own_separator_hint(tmp_path):
    """The hint names csv_options, and read_concrete / read_nims accept it."""
    table = pd.read_csv(CONCRETE)
    semi = tmp_path / "concrete_semicolons.csv"
    table.to_csv(semi, sep=";", index=False)
    with pytest.raises(ValueError, match=r"Pass csv_options=\{'sep': ';'\}"):
        read_concrete(semi)
    assert len(read_concrete(semi, csv_options={"sep": ";"})) == len(read_concrete(CONCRETE))
    header = ";".join(["Fatigue", "Tensile"])
    (tmp_path / "nims.csv").write_text(header + "\n1;2\n")
    with pytest.raises(ValueError, match=r"nims.csv: one column .* Pass csv_options"):
        read_nims(tmp_path / "nims.csv")
