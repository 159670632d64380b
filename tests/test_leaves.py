"""The shared bottom-layer helpers (pipeline/): one version each, with the values every caller relies on."""

from __future__ import annotations

import json
import math
import os
from datetime import date

import numpy as np
import pandas as pd
import pytest

from tabtwin.pipeline import files
from tabtwin.pipeline.conditions import find_value, matches, matching_values
from tabtwin.pipeline.device import default_device, resolve_device
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.keys import category_key, category_keys


# ---------------------------------------------------------------------------------------------- category keys


def test_category_key_spells_one_value_one_way():
    assert category_key(1.0) == category_key(1) == category_key("1") == category_key(np.int64(1)) == "1"
    assert category_key(np.float32(2.0)) == "2"
    assert category_key(1.5) == "1.5"
    assert category_key(True) == category_key(np.bool_(True)) == category_key("True") == "True"
    assert category_key(False) == "False"
    assert category_key(" Female") == " Female"  # text is kept as written; matching forgives spaces, keys do not
    for null in (None, float("nan"), np.nan, pd.NA, pd.NaT, np.datetime64("NaT")):
        assert category_key(null) is None


def test_category_keys_of_a_column():
    keys = category_keys(pd.Series([1.0, 2.0, None, 1.0]), null="NULL")
    assert keys.tolist() == ["1", "2", "NULL", "1"]
    assert category_keys(pd.Series([True, None], dtype=object)).tolist() == ["True", None]


def test_evaluation_and_privacy_use_the_same_keys():
    from tabtwin.evaluation import distance, features
    from tabtwin.pipeline.schema import infer_schema

    assert distance.category_keys(pd.Series([1.0, None])).tolist() == ["1", distance.NULL_KEY]
    real = pd.DataFrame({"grade": pd.Series([1, 2, 3] * 5, dtype="int64")})
    synthetic = pd.DataFrame({"grade": pd.Series([1.0, 2.0, None] * 5)})  # a CSV round trip with a null
    schema = infer_schema(real)
    real_x, synthetic_x = features.model_frames([real, synthetic], schema)
    assert list(real_x["grade"].cat.categories) == ["1", "2", "3"]
    assert synthetic_x["grade"].tolist()[:2] == ["1", "2"] and pd.isna(synthetic_x["grade"].iloc[2])


# ---------------------------------------------------------------------------------------------- JSON


def test_jsonable_cleans_to_plain_json():
    data = {
        "nan": float("nan"), "inf": np.float64("inf"), "ninf": -math.inf, "i": np.int64(3), "f": np.float32(0.5),
        "b": np.bool_(True), "arr": np.array([1, 2]), "t": (1, 2), "when": pd.Timestamp("2024-01-02"),
        "day": date(2024, 1, 2), "na": pd.NA, 7: "int key", "nested": [{"x": np.nan}],
    }
    out = jsonable(data)
    assert out == {
        "nan": None, "inf": None, "ninf": None, "i": 3, "f": 0.5, "b": True, "arr": [1, 2], "t": [1, 2],
        "when": "2024-01-02T00:00:00", "day": "2024-01-02", "na": None, "7": "int key", "nested": [{"x": None}],
    }
    assert type(out["i"]) is int and type(out["b"]) is bool and type(out["f"]) is float
    json.dumps(out, allow_nan=False)  # strict JSON


def test_write_json_atomic_writes_strict_json(tmp_path):
    path = files.write_json_atomic({"score": float("nan"), "n": np.int64(2)}, tmp_path / "a" / "r.json")
    text = path.read_text()
    assert "NaN" not in text
    assert json.loads(text) == {"score": None, "n": 2}


# ---------------------------------------------------------------------------------------------- atomic files


def test_atomic_file_syncs_before_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    target = tmp_path / "t.txt"
    files.write_text_atomic("hello", target)
    assert target.read_text() == "hello"
    assert len(synced) >= 2  # the file, then its folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_atomic_file_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_write_table_goes_through_atomic_file(tmp_path, monkeypatch):
    from tabtwin.pipeline import ingest

    used = []
    real = files.atomic_file
    monkeypatch.setattr(ingest, "atomic_file", lambda *a, **k: used.append(a) or real(*a, **k))
    ingest.write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.csv")
    assert used and (tmp_path / "x.csv").read_text().splitlines() == ["a", "1"]


def test_atomic_directory_replaces_whole(tmp_path):
    target = tmp_path / "run"
    with files.atomic_directory(target, replaces=["a.json", "b.json"]) as staging:
        (staging / "a.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["a.json"]
    with pytest.raises(ValueError):
        with files.atomic_directory(target, replaces=["a.json", "b.json"]) as staging:
            (staging / "b.json").write_text("{}")
            raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["a.json"]


# ---------------------------------------------------------------------------------------------- conditions


def test_condition_matching_tiers():
    values = [" Female", " Male", None]
    assert find_value(values, " Female") == 0
    assert find_value(values, "female") == 0  # case and surrounding spaces forgiven
    assert find_value(values, "FEMALE ") == 0
    assert find_value(values, None) == 2 and find_value(values, float("nan")) == 2
    assert find_value(values, "other") is None
    assert find_value([1, 2], "2") == 1
    assert find_value([1.0, 2.0], 2) == 1 and find_value([1.0, 2.0], "2") == 1
    assert find_value([True, False], "false") == 1 and find_value([True, False], False) == 1
    assert find_value(["1", 1], 1) == 1  # an exact match wins over a text match
    assert matching_values(["a", "A", "b"], "a") == [True, False, False]  # exact wins: only the exact one
    assert matching_values(["A", " a", "b"], "a") == [True, True, False]  # no exact: every text match


def test_filter_rows_and_generators_share_the_match():
    from tabtwin.flows import steps
    from tabtwin.generators import conditions

    df = pd.DataFrame({"grade": [1.0, 2.0, None, 2.0], "sex": [" Female", " Male", " Female", None]})
    assert matches(df["grade"], "2").tolist() == [False, True, False, True]
    assert matches(df["sex"], None).tolist() == [False, False, False, True]
    assert steps.filter_rows(df, {"grade": "2", "sex": "male"}).index.tolist() == [0]
    assert conditions.find_value is find_value  # the one match generators resolve conditions with
    assert find_value([" Female", " Male", None], "male") == 1


# ---------------------------------------------------------------------------------------------- device


def test_device_choice_and_its_environment_default(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(TabtwinError, match="unknown device"):
        resolve_device("tpu")
    monkeypatch.delenv("TABTWIN_DEVICE", raising=False)
    assert default_device() == "auto"
    monkeypatch.setenv("TABTWIN_DEVICE", "cpu")
    assert default_device() == "cpu"
    from tabtwin.generators.base import resolve_device as reexported

    assert reexported is resolve_device
