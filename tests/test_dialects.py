"""Reading what users hand over: CSV dialects and encodings, .xlsx and .jsonl, a trailing delimiter, a file
without a header row, a table too small to synthesise."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tabtwin.flows.cli import main
from tabtwin.pipeline.dialects import Dialect, detect_dialect
from tabtwin.pipeline.errors import IngestError
from tabtwin.pipeline.ingest import read_notes, read_table
from tabtwin.pipeline.schema import infer_schema

EUROPEAN = "kunde;betrag;anteil;stadt\n1;1.234,50;0,25;Köln\n2;17,00;0,5;Genève\n3;-2,75;1;Zürich\n"


def test_a_semicolon_file_with_decimal_commas_is_read_as_numbers_and_the_schema_says_so(tmp_path, capsys):
    path = tmp_path / "eu.csv"
    path.write_bytes(EUROPEAN.encode("cp1252"))
    df = read_table(path)
    assert list(df.columns) == ["kunde", "betrag", "anteil", "stadt"]
    assert df["betrag"].tolist() == [1234.5, 17.0, -2.75] and df["anteil"].tolist() == [0.25, 0.5, 1.0]
    assert df["stadt"].tolist() == ["Köln", "Genève", "Zürich"]
    assert df["betrag"].dtype == "float64" and df["kunde"].dtype == "int64"
    note, few = read_notes(df)
    assert "only 3 rows" in few and "encoding cp1252" in note and "delimiter semicolon" in note and "decimal mark ','" in note
    assert main(["schema", str(path)]) == 0
    assert "read as encoding cp1252 (not UTF-8), delimiter semicolon (';'), decimal mark ','" in capsys.readouterr().out


@pytest.mark.parametrize("text, dialect", [
    ("a,b\n1.5,x\n", Dialect()),
    ("a;b\n1,5;x\n2;y\n", Dialect(delimiter=";", decimal=",")),
    ("a|b|c\n1|2|3\n", Dialect(delimiter="|")),
    ("a;b\n1.5;x\n", Dialect(delimiter=";")),  # a decimal point in a semicolon file stays a point
    ("a;b\n1,5;x\nfoo;y\n", Dialect(delimiter=";")),  # a column that is not all numbers: text, not decimals
    ('name,note\n"Smith; John","a;b;c"\n"Doe; Jane","d"\n', Dialect()),  # quoted semicolons split nothing
    ("only\n1\n2\n", Dialect()),  # one column: the suffix's delimiter
])
def test_the_dialect_is_detected(tmp_path, text, dialect):
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    assert detect_dialect(path, ",") == dialect


def test_a_utf16_export_with_its_bom_is_read(tmp_path):
    path = tmp_path / "u16.tsv"
    path.write_text("name\tn\nÅsa\t1\nBjörn\t2\n", encoding="utf-16")
    df = read_table(path)
    assert df["name"].tolist() == ["Åsa", "Björn"] and df["n"].tolist() == [1, 2]


def test_a_trailing_delimiter_adds_no_empty_column(tmp_path):
    path = tmp_path / "trailing.csv"
    path.write_text("a,b,c,\n1,2,x,\n3,4,y,\n")
    df = read_table(path)
    assert list(df.columns) == ["a", "b", "c"]
    assert any("dropped 1 column with no name and no value" in note for note in read_notes(df))


def test_a_file_without_a_header_row_is_warned_about(tmp_path, capsys):
    path = tmp_path / "headless.csv"
    path.write_text("5.1,3.5,2024-01-03\n4.9,3.0,2024-02-11\n" * 60)
    assert any(note.startswith("warning: every column name is a number or a date") for note in read_notes(read_table(path)))
    named = tmp_path / "named.csv"
    named.write_text("width,height,day\n" + "5.1,3.5,2024-01-03\n" * 200)
    assert read_notes(read_table(named)) == []


def test_a_tiny_table_is_warned_about(tmp_path, capsys):
    path = tmp_path / "two.csv"
    path.write_text("a,b\n1,x\n2,y\n")
    assert any("only 2 rows" in note for note in read_notes(read_table(path)))
    assert main(["schema", str(path)]) == 0
    assert "only 2 rows, so synthetic rows can only recombine (or copy) them" in capsys.readouterr().out
    main(["encode", str(path)])  # the other commands say it on stderr
    assert "only 2 rows" in capsys.readouterr().err


def test_an_excel_workbook_is_read_by_sheet(tmp_path):
    path = tmp_path / "book.xlsx"
    first = pd.DataFrame({"age": [31, 45, 27], "joined": pd.to_datetime(["2024-01-02", "2023-05-06", "2022-07-08"]),
                          "city": ["Oslo", "Bergen", None]})
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        first.to_excel(writer, sheet_name="customers", index=False)
        pd.DataFrame({"x": [1.5, 2.5]}).to_excel(writer, sheet_name="other", index=False)
    with pytest.raises(IngestError, match=r"has 2 sheets \(customers, other\); pick one with --table SHEET"):
        read_table(path)
    with pytest.raises(IngestError, match="has no sheet 'nope'; its sheets are customers, other"):
        read_table(path, table="nope")
    df = read_table(path, table="customers")
    assert df["age"].tolist() == [31, 45, 27] and df["city"].isna().tolist() == [False, False, True]
    assert pd.api.types.is_datetime64_any_dtype(df["joined"])
    single = tmp_path / "single.xlsx"
    first.to_excel(single, index=False, engine="openpyxl")
    pd.testing.assert_frame_equal(read_table(single), df)


def test_json_lines_are_read_and_nested_values_refused(tmp_path):
    path = tmp_path / "events.jsonl"
    rows = [{"user": "u1", "amount": 3.5, "at": "2024-01-02T10:00:00", "ok": True},
            {"user": "u2", "amount": None, "at": "2024-01-03T11:30:00", "ok": False}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    df = read_table(path)
    assert df["user"].tolist() == ["u1", "u2"] and df["ok"].tolist() == [True, False]
    assert df["amount"].iloc[0] == 3.5 and np.isnan(df["amount"].iloc[1])
    kinds = {spec.name: spec.kind for spec in infer_schema(df).columns}
    assert kinds["at"] == "datetime" and kinds["ok"] == "boolean"
    nested = tmp_path / "nested.jsonl"
    nested.write_text('{"a": 1, "b": {"c": 2}}\n{"a": 2, "b": {"c": 3}}\n')
    with pytest.raises(IngestError, match="column 'b' holds nested objects or arrays; flatten them"):
        read_table(nested)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(IngestError, match="could not be read as JSON Lines"):
        read_table(broken)


def test_a_text_file_named_xlsx_gets_one_line(tmp_path):
    path = tmp_path / "fake.xlsx"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(IngestError, match=r"fake.xlsx could not be read as Excel .*; check that it is a valid Excel file"):
        read_table(path)


def test_a_field_past_the_csv_modules_limit_is_read(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("id,blob\n1," + "x" * 200_000 + "\n2,y\n")
    df = read_table(path)
    assert df["blob"].str.len().tolist() == [200_000, 1]


def test_a_dot_decimal_beside_decimal_commas_is_not_read_as_thousands(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("a;b\n1.234,5;0.25\n2,5;0.5\n")
    assert detect_dialect(path, ",") == Dialect(delimiter=";", decimal=",")  # no thousands separator
    df = read_table(path)
    assert df["b"].tolist() == ["0.25", "0.5"] and df["a"].tolist() == ["1.234,5", "2,5"]  # text, never 25


def test_excel_header_cells_of_numbers_stay_text_names(tmp_path):
    path = tmp_path / "years.xlsx"
    pd.DataFrame([[1, 2, "x"], [3, 4, "y"]], columns=[2023, 2024, "label"]).to_excel(path, index=False, engine="openpyxl")
    df = read_table(path)
    assert list(df.columns) == ["2023", "2024", "label"]
    assert not any(note.startswith("warning: every column name") for note in read_notes(df))
