"""R4B validation: the memoised path accepts and rejects exactly what the plain model does."""

from __future__ import annotations

import copy
import gzip
import json
import random
from pathlib import Path

import pytest

from twin.io.fhir.validate import USED_TYPES, R4BValidator, is_r4b_resource_type

DATA = Path(__file__).parent / "data" / "fhir"


def examples() -> list[dict]:
    out = [json.loads(p.read_text()) for p in sorted((DATA / "hl7").glob("*.json"))]
    for b in sorted((DATA / "synthea").glob("*.json.gz")):
        out += [e["resource"] for e in json.loads(gzip.decompress(b.read_bytes()))["entry"]]
    return [r for r in out if r["resourceType"] in USED_TYPES]


ODD_VALUES = [
    None,
    "x",
    "",
    " padded",
    3,
    -1,
    2.5,
    True,
    [],
    [None],
    {},
    {"foo": 1},
    "2020-13-01",
    "2020-01-01T10:00:00",
    "bogus code",
    [{"system": "x"}],
    {"reference": "Patient/1"},
    {"coding": [{"code": "a  b"}]},
    {"value": "abc"},
]
ODD_KEYS = [
    "foo",
    "valueQuantity",
    "valueString",
    "status",
    "code",
    "id",
    "extension",
    "_status",
    "class",
    "subject",
    "effectivePeriod",
    "note",
    "resourceType",
]


def mutate(resource: dict, rng: random.Random) -> dict:
    """Change one element somewhere in the resource (possibly making it invalid)."""
    r = copy.deepcopy(resource)
    node = r
    for _ in range(rng.randint(0, 3)):
        kids = [v for v in node.values() if isinstance(v, dict)]
        kids += [
            v[0] for v in node.values() if isinstance(v, list) and v and isinstance(v[0], dict)
        ]
        if not kids:
            break
        node = rng.choice(kids)
    keys = [k for k in node if k != "resourceType"]
    op = rng.random()
    if op < 0.35 and keys:
        node[rng.choice(keys)] = copy.deepcopy(rng.choice(ODD_VALUES))
    elif op < 0.6 and keys:
        del node[rng.choice(keys)]
    else:
        node[rng.choice(ODD_KEYS)] = copy.deepcopy(rng.choice(ODD_VALUES))
    return r


def test_cached_and_full_validation_agree_on_valid_and_mutated_resources():
    cached, full = R4BValidator("cached"), R4BValidator("full")
    resources = examples()
    for r in resources:  # real examples are valid R4B
        assert cached.validate(r) is None and full.validate(r) is None, r["id"]
    rng = random.Random(0)
    verdicts = []
    for _ in range(600):
        r = mutate(rng.choice(resources), rng)
        a, b = cached.validate(r), full.validate(r)
        # the same verdict and the same message (whole path from the resource type)
        assert a == b, (json.dumps(r)[:300], a, b)
        verdicts.append(a is None)
    assert 0.2 < sum(verdicts) / len(verdicts) < 0.8  # the test really sees both outcomes


def test_invalid_resources_give_the_library_message():
    v = R4BValidator()
    obs = json.loads((DATA / "hl7" / "Observation-bmi.json").read_text())
    assert v.validate(obs) is None
    obs["status"] = " final"  # codes have no leading whitespace
    assert "Observation.status" in v.validate(obs)
    del obs["status"]
    assert "status" in v.validate(obs)  # required element
    obs["status"] = "final"
    obs["valueString"] = "both"  # value[x] twice
    assert "value" in v.validate(obs)


def test_r4b_type_lookup_rejects_unknown_and_r5_only_types():
    assert is_r4b_resource_type("Observation") and is_r4b_resource_type("Claim")
    for name in ("Spaceship", "NutritionIntake", "observation", "Coding", "", "1Patient"):
        assert not is_r4b_resource_type(name), name
    assert "Spaceship" in R4BValidator().validate({"resourceType": "Spaceship"})


def test_validation_modes_are_checked():
    with pytest.raises(ValueError, match="validation mode"):
        R4BValidator("quick")
    bad = {"resourceType": "Patient", "gender": 42}
    assert R4BValidator("none").validate(bad) is None
    assert R4BValidator("full").validate(bad) is not None
