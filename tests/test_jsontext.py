"""vmtools.jsontext: the canonical text is exactly json.dumps(indent=2)'s, errors included,
and the nesting check finds what the old walk found."""

from __future__ import annotations

import enum
import json
import random

import pytest

from vmtools.errors import DataError
from vmtools import jsontext
from vmtools.jsontext import dumps_indented, dumps_sorted, plain_numbers, shared_columns, too_deep
from vmtools.model import dumps, loads


def reference(doc):
    return json.dumps(doc, indent=2, ensure_ascii=True, allow_nan=False)


class Colour(str, enum.Enum):
    RED = "red"


class Count(int):
    pass


TRICKY = [
    {}, [], "x", 1, 1.5, None, True, {"a": {}}, {"a": []}, [[]], [{}],
    {"é": "ü\u2028", "n": [1, 2.0, -0.0, 1e300, True, None, "q\"\n", 10**20]},
    (1, (2, 3)), {"t": (1, 2)}, {1: "x"}, {"a": {1: 2}}, {"a": {"b": {1: [2]}}},
    [1, [2, [3, {"x": [4]}]]], [{"a": 1}, {"b": {}}, {"c": []}],
    # strings that look like the separators mended between records
    [{"a": {}}, {"b": "},\n    {"}], {"l": [{"a": "}{"}, {"b": 2, "c": [], "d": {}}]},
    [{"a": 1}, {}], [{}, {"a": 1}], [{"x": {}}], [{1: 2}], [{"a": 1}, {1: 2}],
    [{"a": [1]}, {"b": 2}], {"e": Colour.RED, "i": Count(3)}, [{"e": Colour.RED}],
    [Colour.RED, {"k": [Count(2)]}],
    # records whose values are empty containers (written inline) or one that is not
    [{"a": 1, "b": [], "c": {}}, {"a": 2, "b": [], "c": {}}], [{"a": 1, "b": []}, {"a": 2, "b": [3]}],
    [{"a": ()}, {"a": 1}], [{"a": {"x": 1}}, {"a": {}}], [{"a": 1}, {"a": Count(2), "b": []}],
]


@pytest.mark.parametrize("doc", TRICKY, ids=range(len(TRICKY)))
def test_same_text_as_the_standard_library(doc):
    assert dumps_indented(doc) == reference(doc)


def test_a_plan_sized_document_is_the_same_text():
    rng = random.Random(0)
    vms = [{"name": f"vm{i}", "host": f"node{rng.randrange(50)}", "state": "running",
            "vcpus": rng.choice([1, 2, 4]), "cpu": rng.random() * 3, "mem_mib": 1024}
           for i in range(2000)]
    doc = {"format": "vmtools.plan", "origin": {"hosts": [{"name": "node1", "tags": []}],
                                                "vms": vms, "problems": []},
           "placement": {v["name"]: v["host"] for v in vms},
           "summary": {"load": [{"host": "node1", "cpu_before": 0.5, "hot_before": [],
                                 "hot_after": ["mem"]}], "steps": []}}
    assert dumps(doc) == reference(doc) + "\n"


def test_random_documents_are_the_same_text():
    rng = random.Random(1)
    leaves = [1, -2, 3.25, "s\u00e9", None, False, True, "", 0.1, "}", "{", "},\n  {", [], {}]

    def gen(depth):
        r = rng.random()
        if depth > 4 or r < 0.35:
            return rng.choice(leaves)
        if r < 0.55:
            return [gen(depth + 1) for _ in range(rng.randint(0, 4))]
        if r < 0.7:
            return [{rng.choice("ab}{") + str(i): gen(depth + 3) for i in range(rng.randint(0, 3))}
                    for _ in range(rng.randint(0, 4))]
        return {rng.choice("abcdef") + str(i): gen(depth + 1) for i in range(rng.randint(0, 4))}

    for _ in range(3000):
        doc = gen(0)
        assert dumps_indented(doc) == reference(doc), doc


@pytest.mark.parametrize("doc", [{"a": [float("nan")]}, {"a": float("inf")}, [{"a": -float("inf")}],
                                 {"a": {"b": object()}}, [{"a": object()}]])
def test_the_same_errors(doc):
    with pytest.raises((ValueError, TypeError)) as ours:
        dumps_indented(doc)
    with pytest.raises((ValueError, TypeError)) as theirs:
        reference(doc)
    assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


def sorted_reference(doc):
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def both_texts(doc):
    """The digest's text then the indented text, written with the values shared, and the
    standard library's (or the error each raised)."""
    def run(first, second):
        try:
            return first(doc), second(doc)
        except (ValueError, TypeError) as e:
            return type(e), str(e)

    with shared_columns():
        ours = run(dumps_sorted, dumps_indented)
    return ours, run(sorted_reference, reference)


RECORDS = TRICKY + [
    [{"a%": 1, "b{}": "x\u00e9\"\\{0}", "c": True, "d": None, "e": -0.0}] * 5,
    [{"n": "a", "h": "b"}, {"h": "c", "n": "d"}],           # the same keys, not in one order
    [{"a": 1}, {"b": 2}], [{"a": 1, "b": 2}, {"a": 1}], [{"a": 1.5}, {"a": "x"}],
    [{"a": True}, {"a": 1}], [{"a": None}, {"a": False}], [{"a": 1}, {"a": 10**400}],
    [{"a": float("nan")}] * 3, [{"a": Count(1)}] * 3, [{"a": [1]}] * 3, [{}] * 3,
    # figures that repeat are written once each: 0.0 and -0.0 (one key of a dict), 1 and 1.0
    [{"a": x} for x in (0.0, -0.0, 1.5, 1.5, 1.5, 1.5, 0.0)],
    [{"a": x} for x in (-0.0, -0.0, 2.5, 2.5, 2.5)], [{"a": x} for x in (1, 1.0, 1, 1.0, 1)],
    [{"a": x, "b": x / 7} for x in (3.0, 3.0, 0.1, 0.1, 3.0, 0.1)],
    {"origin": {"vms": [{"name": "v", "cpu": 0.1}] * 3, "again": [{"z": 1, "y": 2}] * 3},
     "more": [[{"b": 1, "a": 2}] * 3]},
]


@pytest.mark.parametrize("doc", RECORDS, ids=range(len(RECORDS)))
def test_shared_columns_write_the_same_texts(doc, monkeypatch):
    monkeypatch.setattr(jsontext, "SHARED_ROWS", 2)     # every list of records by column
    ours, theirs = both_texts(doc)
    assert ours == theirs


def test_shared_columns_keep_nothing_after_and_a_record_reordered_between_is_written_anew(
        monkeypatch):
    monkeypatch.setattr(jsontext, "SHARED_ROWS", 2)
    rows = [{"name": f"vm{i}", "cpu": i / 3} for i in range(5)]
    with shared_columns():
        dumps_sorted(rows)
        rows[1] = {"cpu": 9.5, "name": "edited"}              # keys in another order
        assert dumps_indented(rows) == reference(rows)
    assert jsontext._shared is None
    assert dumps_sorted(rows) == sorted_reference(rows)


def test_a_cycle_is_refused_as_the_standard_library_does():
    doc: dict = {"a": []}
    doc["a"].append(doc)
    with pytest.raises(ValueError, match="Circular reference detected"):
        dumps_indented(doc)


def test_too_deep_names_the_first_value_past_the_depth():
    deep: list = [1]
    for _ in range(70):
        deep = [deep]
    doc = {"vms": [{"name": "a"}, {"name": "b", "x": {"y": deep}}], "flat": [[1, 2], {"k": 1}]}
    path = "vms[1].x.y" + "[0]" * 61           # depth 65: shortened as it always was
    assert too_deep(doc, 64) == path[:30] + "..." + path[-20:]
    assert too_deep(doc, 80) is None
    assert too_deep({"a": {"b": 1}}, 1) is None
    assert too_deep({"a": {"b": {"c": 1}}}, 1) == "a.b"
    assert too_deep([[1]], 0) == "[0]"


@pytest.mark.parametrize("text, plain", [
    ('{"cpu": 0.25, "mem_mib": 4096, "name": "node00000"}', True),
    ('{"a": 123456789012345678}', True),            # 18 digits: read as it is
    ('{"a": 1234567890123456789}', False),          # 19: the hooks decide
    ('{"a": 1e400}', False), ('{"a": 1E+308}', False), ('{"a": 2e-308}', False),
    ('{"a": 1e99}', True), ('{"x1e400": 1}', False)])
def test_plain_numbers(text, plain):
    assert plain_numbers(text, 18) is plain


@pytest.mark.parametrize("text, message", [
    ('{"a": 1e400}', "too large for a float"), ('{"a": -2E+308}', "too large for a float"),
    ('{"a": 12345678901234567890}', "integer of 20 digits"),
    ('{"a": NaN}', "NaN is not a number JSON allows")])
def test_loads_still_refuses_what_the_hooks_refuse(text, message):
    with pytest.raises(DataError, match=message):
        loads(text)


@pytest.mark.parametrize("d", [{}, {"a": 1}, {"b": 1, "a": 2}, {"a": 1, "b": 2, "c": 3},
                               {"vm2": "h", "vm10": "g", "vm1": "h"}, {"z": 0, "a": 0, "m": 0}])
def test_by_key_is_the_dict_sorted_by_key_and_a_copy(d):
    out = jsontext.by_key(d)
    assert list(out.items()) == sorted(d.items()) and out is not d
