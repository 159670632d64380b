import json

import numpy as np
import pandas as pd
import pytest

from tabtwin.pipeline.errors import SchemaError
from tabtwin.pipeline.schema import Schema, infer_schema, load_metadata, save_metadata


def kinds(schema):
    return {spec.name: spec.kind for spec in schema.columns}


def test_infers_every_kind(mixed_frame):
    assert kinds(infer_schema(mixed_frame)) == {
        "customer_id": "id",
        "amount": "continuous",
        "count": "continuous",
        "score": "continuous",
        "colour": "discrete",
        "grade": "discrete",
        "city": "discrete",
        "active": "boolean",
        "joined": "datetime",
        "seen_at": "datetime",
        "born": "datetime",
    }


def test_records_nulls_integers_and_date_formats(mixed_frame):
    schema = infer_schema(mixed_frame)
    assert schema["score"].null_rate == pytest.approx(mixed_frame["score"].isna().mean())
    assert schema["amount"].null_rate == 0 and not schema["amount"].has_nulls
    assert schema["count"].integer and not schema["amount"].integer
    assert schema["born"].datetime_format == "%Y-%m-%d"
    assert schema["joined"].datetime_format is None  # already datetime64: nothing to parse


def test_adult_kinds(adult):
    schema = infer_schema(adult)
    continuous = {s.name for s in schema.of_kind("continuous")}
    assert continuous == {"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}
    assert {s.name for s in schema.of_kind("discrete")} == set(adult.columns) - continuous


def test_unique_integers_are_an_id_only_when_named_so():
    df = pd.DataFrame({"weight_g": np.arange(50) * 7 + 3, "order_id": np.arange(50)})
    assert kinds(infer_schema(df)) == {"weight_g": "continuous", "order_id": "id"}


def test_small_tables_do_not_turn_strings_into_ids():
    df = pd.DataFrame({"name": ["a", "b", "c"]})
    assert kinds(infer_schema(df)) == {"name": "discrete"}


def test_numbers_in_strings_are_not_dates():
    df = pd.DataFrame({"year": ["2019", "2020", "2021"] * 10, "code": ["A1", "B2", "C3"] * 10})
    assert kinds(infer_schema(df)) == {"year": "discrete", "code": "discrete"}


def test_metadata_overrides_only_the_columns_it_names(mixed_frame):
    metadata = {
        "columns": {"grade": {"sdtype": "numerical"}, "count": {"sdtype": "categorical"}, "colour": {"sdtype": "id"}},
    }  # an id, not the primary key: its values repeat (a repeating primary key is refused, tests/test_encoding.py)
    schema = infer_schema(mixed_frame, metadata)
    got = kinds(schema)
    assert got["grade"] == "continuous" and schema["grade"].integer
    assert got["count"] == "discrete"
    assert got["colour"] == "id"
    assert got["amount"] == "continuous"  # not named: still inferred


def test_a_unique_primary_key_becomes_an_id(mixed_frame):
    frame = mixed_frame.assign(count=np.arange(len(mixed_frame)))
    assert kinds(infer_schema(frame))["count"] == "continuous"
    schema = infer_schema(frame, {"columns": {}, "primary_key": "count"})
    assert schema["count"].kind == "id" and schema["count"].id_start == len(frame)


def test_metadata_accepts_single_table_from_multi_table_format(mixed_frame):
    metadata = {"tables": {"t": {"columns": {"grade": {"sdtype": "numerical"}}}}}
    assert infer_schema(mixed_frame, metadata)["grade"].kind == "continuous"
    assert "columns" not in metadata  # the caller's dict is left alone


@pytest.mark.parametrize(
    "metadata, words",
    [
        ({"columns": {"nope": {"sdtype": "numerical"}}}, ["nope", "does not have"]),
        ({"columns": {"grade": {"sdtype": "text"}}}, ["grade", "'text'", "numerical"]),
        ({"columns": {"grade": "numerical"}}, ["grade", "sdtype"]),
        ({"columns": {"colour": {"sdtype": "numerical"}}}, ["colour", "categorical"]),
        ({"columns": {"colour": {"sdtype": "datetime"}}}, ["colour", "datetime_format"]),
        ({"columns": {"grade": {"sdtype": "boolean"}}}, ["grade", "boolean"]),
        ({"cols": {}}, ["columns"]),
        ({"columns": {}, "primary_key": "nope"}, ["nope"]),
    ],
)
def test_bad_metadata_is_rejected_with_a_clear_message(mixed_frame, metadata, words):
    with pytest.raises(SchemaError) as err:
        infer_schema(mixed_frame, metadata)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_metadata_written_by_us_reproduces_the_schema(mixed_frame, tmp_path):
    schema = infer_schema(mixed_frame)
    path = save_metadata(schema, tmp_path / "meta.json")
    assert json.loads(path.read_text())["columns"]["amount"] == {"sdtype": "numerical", "computer_representation": "Float"}
    again = infer_schema(mixed_frame, load_metadata(path))
    assert again == schema
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_schema_dict_round_trip(mixed_frame):
    schema = infer_schema(mixed_frame)
    assert Schema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema


def test_load_metadata_errors_name_the_file(tmp_path):
    with pytest.raises(SchemaError, match="not found"):
        load_metadata(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SchemaError, match="bad.json"):
        load_metadata(bad)
    wrong = tmp_path / "list.json"
    wrong.write_text("[1, 2]")
    with pytest.raises(SchemaError, match="list.json"):
        load_metadata(wrong)
