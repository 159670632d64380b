"""Data contracts: learned from the real table, the real table meets them, each kind of damage is named."""

import json
import os
import socket

import numpy as np
import pandas as pd
import pytest

from tabtwin.evaluation.contracts import build_suite, check_contracts, contracts_report
from tabtwin.pipeline.sample_data import make_sample_table
from tabtwin.pipeline.schema import infer_schema

BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
IN_TYPES = "expect_column_values_to_be_in_type_list"
NON_NULL_SHARE = "expect_column_proportion_of_non_null_values_to_be_between"
NOT_NULL = "expect_column_values_to_not_be_null"
UNIQUE = "expect_column_values_to_be_unique"
STRFTIME = "expect_column_values_to_match_strftime_format"


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return make_sample_table(400, seed=7)


@pytest.fixture(scope="module")
def schema(real):
    return infer_schema(real)


@pytest.fixture(scope="module")
def suite(real, schema):
    return build_suite(real, schema)


def failed_pairs(report: dict) -> set[tuple[str, str | None]]:
    return {(f["expectation"], f["column"]) for f in report["failed"]}


def test_real_table_meets_its_own_contracts(real, schema, suite):
    report = check_contracts(real, suite)
    assert report["failed"] == [] and report["n_failed"] == 0
    assert report["success_rate"] == 1.0
    # every rule is present: table shape, types, ranges, sets, nulls, uniqueness
    assert set(report["by_rule"]) == {"table", "type", "range", "set", "nulls", "unique"}
    assert report["n_expectations"] == len(suite.expectations) >= 3 * len(schema.columns)
    kinds = {(e.expectation_type, getattr(e, "column", None)) for e in suite.expectations}
    assert (UNIQUE, "customer_id") in kinds and (STRFTIME, "born") in kinds
    assert (NON_NULL_SHARE, "score") in kinds and (NOT_NULL, "amount") in kinds
    assert report["great_expectations_version"].startswith("1.")


def _out_of_range(df):
    df.loc[3, "amount"] = df["amount"].max() + 100.0


def _unseen_category(df):
    df.loc[5, "colour"] = "purple"


def _float_in_int_column(df):
    df["count"] = df["count"].astype(float)
    df.loc[0, "count"] = 30.5  # inside the seen range: only the type is wrong


def _more_nulls(df):
    df.loc[: int(len(df) * 0.6), "score"] = np.nan  # real rate is about 0.1


def _null_where_none_were(df):
    df.loc[2, "colour"] = None


def _duplicated_id(df):
    df.loc[9, "customer_id"] = df.loc[8, "customer_id"]


def _late_datetime(df):
    df.loc[4, "joined"] = df["joined"].max() + pd.Timedelta(days=400)


def _late_date_string(df):
    df.loc[6, "born"] = "2099-01-01"


def _wrong_date_format(df):
    df.loc[7, "born"] = "01/02/1990"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_out_of_range, {(BETWEEN, "amount")}),
        (_unseen_category, {(IN_SET, "colour")}),
        (_float_in_int_column, {(IN_TYPES, "count")}),
        (_more_nulls, {(NON_NULL_SHARE, "score")}),
        (_null_where_none_were, {(NOT_NULL, "colour")}),
        (_duplicated_id, {(UNIQUE, "customer_id")}),
        (_late_datetime, {(BETWEEN, "joined")}),
        (_late_date_string, {("expect_column_max_to_be_between", "born")}),
        (_wrong_date_format, {(STRFTIME, "born")}),
    ],
)
def test_each_damage_fails_exactly_its_expectation(real, suite, damage, expected):
    broken = real.copy()
    damage(broken)
    report = check_contracts(broken, suite)
    assert failed_pairs(report) == expected
    assert report["n_failed"] == 1 and report["success_rate"] == pytest.approx(1 - 1 / report["n_expectations"])
    assert report["failed"][0]["observed"], "a failure says what was observed"
    sentence = report["failed"][0]["sentence"]
    column = next(iter(expected))[1]
    assert sentence.startswith(f"{column}: ") and "{" not in sentence, sentence


def test_failures_read_as_sentences(real, suite):
    broken = real.copy()
    broken.loc[[5, 11], "colour"] = "purple"
    broken.loc[3, "amount"] = 500.0
    broken.loc[: int(len(broken) * 0.6), "score"] = np.nan
    by_column = {f["column"]: f["sentence"] for f in check_contracts(broken, suite)["failed"]}
    # amount's extremes are held by one real row each: the range is rounded outward and only the synthetic
    # value outside it is quoted (evaluation/disclosure.py)
    (rule,) = [e for e in suite.expectations if e.expectation_type == BETWEEN and e.column == "amount"]
    low, high = rule.min_value, rule.max_value
    assert low < real["amount"].min() and high > real["amount"].max() and float(low).is_integer()
    assert by_column["amount"] == (f"amount: values should lie between {low:.6g} and {high:.6g}, the real range rounded "
                                   f"outward (an end held by fewer than 10 real rows is not shown); 1 synthetic row "
                                   f"(0.25 %) falls outside (observed up to 500)")
    assert by_column["colour"] == ("colour: values should be among the 3 seen in the real table ('blue', 'green', "
                                   "'red'); 2 synthetic rows (0.5 %) hold others, e.g. 'purple'")
    real_rate = real["score"].isna().mean()
    assert by_column["score"].startswith(f"score: nulls should make up {100 * (real_rate - 0.05):.1f} % to "
                                         f"{100 * (real_rate + 0.05):.1f} % of rows (the real rate, {100 * real_rate:.1f} %")
    assert by_column["score"].endswith(f"the synthetic rate is {100 * broken['score'].isna().mean():.1f} %")
    missing = check_contracts(real.drop(columns=["city"]).assign(extra=1), suite)["failed"]
    assert missing[0]["sentence"] == ("the synthetic table should have exactly the real table's columns; missing city; "
                                      "unexpected extra")


def test_failure_reports_unexpected_values(real, suite):
    broken = real.copy()
    broken.loc[[5, 11], "colour"] = "purple"
    (failure,) = check_contracts(broken, suite)["failed"]
    assert failure["rule"] == "set" and failure["kwargs"]["value_set"] == ["blue", "green", "red"]
    assert failure["observed"]["unexpected_count"] == 2 and failure["observed"]["examples"] == ["purple", "purple"]


def test_missing_column_is_named(real, suite):
    report = check_contracts(real.drop(columns=["city"]), suite)
    pairs = failed_pairs(report)
    assert ("expect_table_columns_to_match_set", None) in pairs and ("expect_column_to_exist", "city") in pairs
    assert {column for _, column in pairs} == {None, "city"}  # nothing else is blamed
    table = next(f for f in report["failed"] if f["expectation"] == "expect_table_columns_to_match_set")
    assert table["observed"]["details"]["mismatched"]["missing"] == ["city"]


def test_extra_column_fails_the_column_set(real, suite):
    report = check_contracts(real.assign(extra=1), suite)
    assert failed_pairs(report) == {("expect_table_columns_to_match_set", None)}


def test_null_rate_band_is_real_rate_plus_minus_tolerance():
    n = 1000

    def with_nulls(share):  # rows 1..share*n null; first and last rows keep the range
        values = pd.Series(np.arange(n, dtype=float))
        values.iloc[1 : 1 + round(share * n)] = np.nan
        return pd.DataFrame({"x": values})

    real = with_nulls(0.20)
    schema = infer_schema(real)
    suite = build_suite(real, schema, null_tolerance=0.05)
    for share in (0.16, 0.24, 0.20):
        assert check_contracts(with_nulls(share), suite)["n_failed"] == 0, share
    for share in (0.14, 0.26):
        assert failed_pairs(check_contracts(with_nulls(share), suite)) == {(NON_NULL_SHARE, "x")}, share
    tight = build_suite(real, schema, null_tolerance=0.0)
    assert check_contracts(real, tight)["n_failed"] == 0
    assert failed_pairs(check_contracts(with_nulls(0.21), tight)) == {(NON_NULL_SHARE, "x")}


def test_range_mostly_lets_an_unclipped_fresh_draw_pass(correlated_split):
    train, _, fresh = correlated_split
    schema = infer_schema(train)
    # min_count=1: the exact real extremes as bounds (by default an extreme held by fewer than 10 real rows is
    # rounded outward, which leaves this draw room: tested below)
    strict = contracts_report(train, fresh, schema, min_count=1)
    assert strict["n_failed"] > 0 and {f["rule"] for f in strict["failed"]} == {"range"}  # sample extremes move
    loose = contracts_report(train, fresh, schema, range_mostly=0.99, min_count=1)
    assert loose["failed"] == [] and loose["range_mostly"] == 0.99
    wild = fresh.copy()
    wild.loc[: len(wild) // 20, "income"] = train["income"].max() * 2  # 5% far out still fails
    assert failed_pairs(contracts_report(train, wild, schema, range_mostly=0.99, min_count=1)) == {(BETWEEN, "income")}
    assert contracts_report(train, fresh, schema)["failed"] == []
    assert failed_pairs(contracts_report(train, wild, schema, range_mostly=0.99)) == {(BETWEEN, "income")}
    with pytest.raises(ValueError, match="range_mostly"):
        build_suite(train, schema, range_mostly=0)


def test_nullable_integers_and_other_units_keep_the_integer_type():
    real = pd.DataFrame({"n": pd.array(list(range(40)) + [None] * 5, dtype="Int64")})
    schema = infer_schema(real)
    suite = build_suite(real, schema)
    assert check_contracts(real, suite)["n_failed"] == 0
    assert check_contracts(real.astype({"n": "Int32"}), suite)["n_failed"] == 0
    assert failed_pairs(check_contracts(real.astype({"n": "float64"}), suite)) == {(IN_TYPES, "n")}


def test_unsortable_date_format_is_format_checked_without_range(real):
    frame = pd.DataFrame({"day": pd.date_range("2020-01-01", periods=60, freq="D").strftime("%d/%m/%Y")})
    schema = infer_schema(frame, {"columns": {"day": {"sdtype": "datetime", "datetime_format": "%d/%m/%Y"}}})
    suite = build_suite(frame, schema)
    types = {e.expectation_type for e in suite.expectations}
    assert STRFTIME in types and "expect_column_max_to_be_between" not in types
    assert any("day" in note for note in suite.notes or [])
    assert check_contracts(frame, suite)["n_failed"] == 0
    bad = frame.copy()
    bad.loc[0, "day"] = "2020-01-01"
    assert failed_pairs(check_contracts(bad, suite)) == {(STRFTIME, "day")}


def test_suite_round_trips_through_json(real, schema):
    report = contracts_report(real, real, schema)
    text = json.dumps(report, allow_nan=False)  # the whole report, suite included, is plain JSON
    saved = json.loads(text)["suite"]
    assert saved["name"] and len(saved["expectations"]) == report["n_expectations"]
    again = check_contracts(real, saved)  # a saved suite can be checked again
    assert again["n_expectations"] == report["n_expectations"] and again["n_failed"] == 0
    broken = real.copy()
    _unseen_category(broken)
    assert failed_pairs(check_contracts(broken, saved)) == {(IN_SET, "colour")}
    assert json.loads(json.dumps(again["suite"])) == saved


def test_runs_offline_and_turns_analytics_off(real, schema, monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.delenv("GX_ANALYTICS_ENABLED", raising=False)
    report = contracts_report(real, real, schema)
    assert report["success_rate"] == 1.0
    assert attempts == []
    assert os.environ["GX_ANALYTICS_ENABLED"] == "false"


def test_no_progress_bars_or_log_noise(real, suite, capfd):
    broken = real.copy()
    _unseen_category(broken)
    check_contracts(broken, suite)
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in out + err
    assert err == ""


def test_bad_inputs_are_refused(real, schema):
    with pytest.raises(ValueError, match="null_tolerance"):
        build_suite(real, schema, null_tolerance=1.5)
    with pytest.raises(ValueError, match="city"):
        build_suite(real.drop(columns=["city"]), schema)
