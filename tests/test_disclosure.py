"""What a withheld run leaves behind (issue 20 item 6): no real value held by fewer than k real rows.

A failed gate withholds the synthetic table; its folder (report.json, report.html, expectation_suite.json,
run.json) must not hold the rare real values the gate kept back: e-mail addresses, phone numbers, household
codes, ids, a unique salary. Common values still show, and the contracts still catch a wrong shape.
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from tabtwin.evaluation.contracts import build_suite, check_contracts
from tabtwin.evaluation.disclosure import MIN_COUNT, outer_bounds, outer_datetime_bounds, shape, shapes
from tabtwin.evaluation.plot_style import plotly_js
from tabtwin.evaluation.report import evaluate
from tabtwin.flows.publish import publish
from tabtwin.pipeline.schema import infer_schema

FIRST = ["anna", "ben", "chloe", "dmitri", "emma", "farid", "greta", "hugo", "ines", "jonas", "kaia", "luca"]
LAST = ["berg", "costa", "dahl", "evans", "fischer", "garcia", "holm", "ivanova", "jensen", "kowalski"]
CITIES = ["Basel", "Bern", "Geneva", "Lausanne", "Lugano", "Zurich"]
CEO_SALARY = 7_314_159.27


def people(n_households: int, seed: int) -> pd.DataFrame:
    """Households of 1 to 3 people sharing a code and a phone; e-mails nearly all distinct (a few shared)."""
    rng = np.random.default_rng(seed)
    rows = []
    for h in range(n_households):
        code = f"HH-{rng.integers(1000, 9999)}-{''.join(rng.choice(list('ABCDEFGHJKLMNPQRSTUVWXYZ'), 2))}"
        phone = f"+41 {rng.integers(21, 99)} {rng.integers(100, 999)} {rng.integers(1000, 9999)}"
        city, plan = rng.choice(CITIES), rng.choice(["basic", "plus", "premium"], p=[0.5, 0.3, 0.2])
        shared = f"{rng.choice(LAST)}.family{rng.integers(1, 99)}@example.net" if rng.random() < 0.2 else None
        for _ in range(rng.integers(1, 4)):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = shared or f"{first}.{last}{rng.integers(1, 9999)}@example.org"
            rows.append({"customer_id": f"C-{rng.integers(10**6, 10**7)}", "email": email, "phone": phone,
                         "household": code, "city": city, "plan": plan, "age": int(rng.integers(18, 80)),
                         "salary": round(float(rng.lognormal(11, 0.4)), 2)})
    frame = pd.DataFrame(rows)
    frame["customer_id"] = [f"C-{i:07d}-{v[2:]}" for i, v in enumerate(frame["customer_id"])]  # unique
    return frame


@pytest.fixture(scope="module")
def tables():
    table = people(330, seed=3)
    table.loc[5, "salary"] = CEO_SALARY  # one unique extreme
    table.loc[9, "age"] = 104
    train, holdout = table.iloc[:520].reset_index(drop=True), table.iloc[520:].reset_index(drop=True)
    # Declared categories, so modelled (not faked as personal data): the report must withhold their rare values.
    schema = infer_schema(train, {"columns": {"email": {"sdtype": "categorical"}, "phone": {"sdtype": "categorical"}}})
    assert {schema[c].kind for c in ("email", "phone", "household")} == {"discrete"}
    assert schema["customer_id"].kind == "id"
    return train, holdout, schema


def rare_values(train: pd.DataFrame, holdout: pd.DataFrame) -> set[str]:
    """Every real text value that fewer than k training rows hold, and the unique extremes as the report would
    print them."""
    rare = set()
    for column in ("customer_id", "email", "phone", "household"):
        counts = train[column].value_counts()
        rare |= set(counts[counts < MIN_COUNT].index) | (set(holdout[column]) - set(counts.index[counts >= MIN_COUNT]))
    rare |= {f"{CEO_SALARY:.6g}", f"{CEO_SALARY:.2f}", str(CEO_SALARY), "7314159"}
    return rare


@pytest.fixture(scope="module")
def withheld(tables, tmp_path_factory):
    """A run whose synthetic table copies training rows (the gate fails on privacy) and breaks contracts whose
    failures could quote real values: repeated ids, e-mails of the wrong shape."""
    train, holdout, schema = tables
    synthetic = train.copy()
    synthetic.loc[1:4, "customer_id"] = synthetic.loc[0, "customer_id"]
    synthetic.loc[10:13, "email"] = "not-an-email"
    results = evaluate(train, holdout, synthetic, schema, target="plan")
    assert not results["gate"]["passed"]
    out = tmp_path_factory.mktemp("runs")
    folder = publish(out, "withheld", results, train, synthetic, schema,
                     {"model": "tvae", "rows": len(synthetic), "conditions": {}}).folder
    return results, folder


def written(folder) -> dict[str, str]:
    """Every file the run left, as text; the inlined plotly.js (a library, 4.8 MB of digits) taken out."""
    files = {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.rglob("*")) if path.is_file()}
    files["report.html"] = files["report.html"].replace(plotly_js(), "")
    return files


def rare_numbers(train: pd.DataFrame, holdout: pd.DataFrame) -> set[float]:
    """The salaries fewer than k training rows hold (all but none: they have cents) and the unique age. Round
    numbers such as most ages are left out: a histogram's bin edges and centres are round and may equal one."""
    counts = train["salary"].value_counts()
    return set(counts.index[counts < MIN_COUNT]) | (set(holdout["salary"]) - set(counts.index)) | {104.0}


def plotted(html: str) -> list:
    """[data, layout] of every plotly figure on the page, its typed arrays decoded: plotly 6+ writes numpy arrays
    as {"dtype", "bdata" (base64), "shape"?}, which no text search sees."""
    decoder, figures = json.JSONDecoder(), []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",', html):
        rest = html[match.end():].lstrip()
        data, end = decoder.raw_decode(rest)
        layout, _ = decoder.raw_decode(rest[end:].lstrip().lstrip(",").lstrip())
        figures.append(_decoded([data, layout]))
    return figures


def _decoded(value):
    if isinstance(value, dict) and {"dtype", "bdata"} <= set(value):
        return {"decoded": np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()}
    if isinstance(value, dict):
        return {k: _decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


def numbers(value) -> list[float]:
    """Every number in a decoded figure, in arrays or not."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_a_withheld_run_leaves_no_rare_real_value(tables, withheld):
    train, holdout, _ = tables
    results, folder = withheld
    files = written(folder)
    assert set(files) == {"report.json", "report.html", "expectation_suite.json", "run.json"}
    assert not (folder / "synthetic.parquet").exists()
    rare = rare_values(train, holdout)
    assert len(rare) > 900
    for name, text in files.items():
        leaked = sorted(value for value in rare if value in text)
        assert not leaked, f"{name} holds {len(leaked)} rare real values, e.g. {leaked[:5]}"
    figures = plotted(files["report.html"])
    assert len(figures) > 8 and '"decoded"' in json.dumps(figures)  # the arrays were there to decode
    rare = rare_numbers(train, holdout)
    assert CEO_SALARY in rare and len(rare) > 500
    leaked = sorted(rare & set(numbers(figures)))
    assert not leaked, f"the figures plot {len(leaked)} rare real numbers, e.g. {leaked[:5]}"
    # report.json holds the tables the figures draw: the same rule holds for their numbers.
    report = json.loads(files["report.json"])
    tables = [report["fidelity"]["column_shares"], report["fidelity"]["associations"], report["privacy"]["dcr_histogram"]]
    salary = next(t for t in tables[0]["columns"] if t["column"] == "salary")
    assert len(salary["bars"]["x"]) > 5 and len(tables[1]["real"]) == len(tables[1]["columns"]) > 4
    leaked = sorted(rare & set(numbers(tables)))
    assert not leaked, f"report.json's figure tables hold {len(leaked)} rare real numbers, e.g. {leaked[:5]}"


def test_the_report_stays_useful_and_states_the_rule(tables, withheld):
    train, _, _ = tables
    results, folder = withheld
    files = written(folder)
    for city in CITIES:  # common values: in the chart and in the suite's value set
        assert json.dumps(city) in files["report.html"] and json.dumps(city) in files["expectation_suite.json"]
    disclosure = json.loads(files["report.json"])["meta"]["disclosure"]
    assert disclosure["min_count"] == MIN_COUNT
    email = disclosure["columns"]["email"]
    assert email["values"] == train["email"].nunique() and email["withheld"] == email["values"]
    assert disclosure["columns"]["city"]["withheld"] == 0
    html = files["report.html"]
    assert f"at least {MIN_COUNT} real rows" in html and 'id="disclosure"' in html
    section = html[html.index('id="disclosure"'):]
    assert re.search(rf"<td>email</td><td>{email['values']}</td><td>{email['withheld']}</td>", section)


def test_contracts_on_rare_valued_columns_check_shapes_not_values(tables, withheld):
    train, _, schema = tables
    results, _ = withheld
    failed = {(f["column"], f["rule"]) for f in results["contracts"]["failed"]}
    assert ("email", "pattern") in failed and ("customer_id", "unique") in failed
    suite = build_suite(train, schema)
    rules = {(e.expectation_type, getattr(e, "column", None)) for e in suite.expectations}
    assert ("expect_column_values_to_match_regex_list", "phone") in rules
    (phone,) = [e for e in suite.expectations if e.expectation_type.endswith("match_regex_list") and e.column == "phone"]
    assert phone.regex_list == [r"^\+\d{2} \d{2} \d{3} \d{4}$"]
    assert not [e for e in suite.expectations if e.expectation_type == "expect_column_values_to_be_in_set"
                and getattr(e, "column", None) in ("email", "phone", "household")]
    assert check_contracts(train, suite)["n_failed"] == 0  # the real table meets its own contracts
    broken = train.copy()
    broken.loc[0, "phone"] = "+41-79-123-4567"  # the length of a real one, not the shape
    broken.loc[1, "email"] = "x" * 90
    report = check_contracts(broken, suite)
    assert {(f["column"], f["rule"]) for f in report["failed"]} == {("phone", "pattern"), ("email", "length"),
                                                                    ("email", "pattern")}


def test_outer_bounds_pin_no_rare_extreme():
    values = np.r_[np.arange(1.0, 101.0), [7_314_159.27]]
    low, high = outer_bounds(values)
    assert low == 0 and high == 10_000_000  # 0 is no value here, the step is 10 ** 7
    # A rare 0 is an extreme like any other: the bound goes past it, not to it.
    assert outer_bounds(np.arange(100.0)) == (-10.0, 100.0)
    assert outer_bounds(-np.arange(100.0)) == (-100.0, 10.0)
    assert outer_bounds(np.r_[np.zeros(20), np.arange(1.0, 99.0)]) == (0.0, 100.0)  # 0 common: exact
    assert outer_bounds(np.r_[[17.0] * 12, np.arange(18.0, 91.0), [90.0] * 9]) == (17.0, 90.0)  # both common
    assert outer_bounds([]) is None
    stamps = pd.Series(pd.date_range("2020-01-01 08:13", periods=100, freq="D"))
    low, high = outer_datetime_bounds(stamps)
    assert low < stamps.min() and high > stamps.max() and (low.hour, high.hour) == (0, 0)


def test_shapes_generalise_until_common():
    assert shape("+41 79 123 4567", "case") == r"^\+\d{2} \d{2} \d{3} \d{4}$"
    assert shape("anna.berg42@example.org", "digits") == r"^[A-Za-z]+\.[A-Za-z]+\d+@[A-Za-z]+\.[A-Za-z]+$"
    emails = pd.Series([f"{a}.{b}{i}@example.org" for i, (a, b) in enumerate(zip(FIRST * 20, LAST * 24))])
    regexes, matched = shapes(emails)  # 1 to 3 digits, each common: the finer level with a shape per length
    assert regexes == [rf"^[A-Za-z]+\.[A-Za-z]+\d{n}@[A-Za-z]+\.[A-Za-z]+$" for n in ("", "{2}", "{3}")]
    assert matched == 1.0
    assert shapes(pd.Series(["-".join("ab" * (i % 30 + 1)) for i in range(60)])) is None  # 30 shapes, 2 rows each


def test_an_error_message_quotes_no_synthetic_value():
    from tabtwin.evaluation.contracts import contracts_report
    from tabtwin.pipeline.sample_data import make_sample_table

    real = make_sample_table(300, seed=1)
    synthetic = real.assign(born="anna.berg42@example.org")  # dateutil's error would quote it
    report = contracts_report(real, synthetic, infer_schema(real))
    errors = [f for f in report["failed"] if f["observed"].get("error")]
    assert errors and all("<a value>" in f["observed"]["error"] for f in errors)
    assert "anna.berg42" not in json.dumps(report["failed"])


def test_bounds_stay_within_what_the_type_holds():
    biggest = float(np.finfo(np.float64).max)
    for extreme in (1e308, 1.7e308):
        low, high = outer_bounds(np.r_[np.arange(50.0, 150.0), extreme])
        assert low == 40 and extreme < high <= biggest
        assert outer_bounds(-np.r_[np.arange(50.0, 150.0), extreme]) == (-high, -low)
    # A rare extreme at the end of the floats leaves no finite bound beyond it: that end is open.
    assert outer_bounds(np.r_[np.arange(50.0, 150.0), biggest])[1] == np.inf
    assert outer_bounds(np.r_[np.arange(50.0, 150.0), [biggest] * MIN_COUNT])[1] == biggest  # common: exact
    for text in ("1677-09-22", "2262-01-01", "1700-01-01"):
        stamp = pd.Timestamp(text)
        low, high = outer_datetime_bounds(pd.Series([stamp]))
        assert pd.Timestamp.min <= low < stamp < high <= pd.Timestamp.max
        dates = pd.Series(pd.date_range("2020-01-01", "2022-12-31", periods=300)).where(lambda s: s.index > 0, stamp)
        low, high = outer_datetime_bounds(dates)
        assert low < stamp and high > dates.max()
    ends = pd.Series([pd.Timestamp.min, *pd.date_range("2020-01-01", periods=50), pd.Timestamp.max])
    assert outer_datetime_bounds(ends) == (None, None)  # rare, at the very ends of the range: open
    ends = pd.Series([*[pd.Timestamp.min] * MIN_COUNT, *pd.date_range("2020-01-01", periods=50),
                      *[pd.Timestamp.max] * MIN_COUNT])
    assert outer_datetime_bounds(ends) == (pd.Timestamp.min, pd.Timestamp.max)  # common: exact
    zoned = outer_datetime_bounds(pd.Series([pd.Timestamp("2262-04-10", tz="Europe/Zurich")]))
    assert zoned[1].tz is not None and zoned[1] > pd.Timestamp("2262-04-10", tz="Europe/Zurich")


def test_an_extreme_date_or_number_evaluates_and_publishes(tmp_path, capsys):
    """A 1700 among 2020s dates, a 2262 and a 1.7e308 in real, holdout and synthetic rows: the contracts'
    bounds, the figures and the report stay within pandas' nanosecond range and the finite floats."""
    from tabtwin.flows.cli import main
    from tabtwin.pipeline.ingest import write_table

    rng = np.random.default_rng(0)

    def table(n):
        frame = pd.DataFrame({"when": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), "D"),
                              "late": pd.Timestamp("2250-01-01") + pd.to_timedelta(rng.integers(0, 4000, n), "D"),
                              "amount": rng.normal(100, 10, n).round(2), "plan": rng.choice(["a", "b"], n)})
        frame.loc[0, ["when", "late", "amount"]] = [pd.Timestamp("1700-01-01"), pd.Timestamp("2262-04-11"), 1.7e308]
        return frame

    paths = {name: write_table(table(n), tmp_path / f"{name}.parquet")
             for name, n in (("real", 300), ("holdout", 100), ("synthetic", 300))}
    code = main(["evaluate", "--real", str(paths["real"]), "--holdout", str(paths["holdout"]),
                 "--synthetic", str(paths["synthetic"]), "--target", "plan", "--out", str(tmp_path / "report")])
    assert code in (0, 3), capsys.readouterr()
    suite = json.loads((tmp_path / "report" / "expectation_suite.json").read_text())
    ranges = {e["kwargs"]["column"]: e["kwargs"] for e in suite["expectations"]
              if e["type"] == "expect_column_values_to_be_between"}
    assert ranges["when"]["min_value"] < "1700-01-01" and ranges["late"]["max_value"] > "2262-04-11"
    assert ranges["amount"]["max_value"] > 1.7e308
    assert (tmp_path / "report" / "report.html").stat().st_size > 0


def test_an_open_end_is_no_bound_in_the_contracts_and_the_figures_draw_it():
    from tabtwin.evaluation.column_figures import column_figures
    from tabtwin.evaluation.column_shares import column_shares

    real = pd.DataFrame({"when": [*pd.date_range("2020-01-01", periods=98), pd.Timestamp.min, pd.Timestamp.max],
                         "x": np.r_[np.arange(99.0), np.finfo(np.float64).max]})
    schema = infer_schema(real)
    suite = build_suite(real, schema)
    ranges = {e.column: (e.min_value, e.max_value) for e in suite.expectations
              if e.expectation_type == "expect_column_values_to_be_between"}
    assert ranges == {"x": (-10, None)}  # both ends of "when" are open: no range rule
    assert check_contracts(real, suite)["n_failed"] == 0
    few = real.iloc[[0, 1, 2, 3, 4, 98, 99]]  # fewer than 2k values: the histogram spans the bounds
    assert len(column_figures(column_shares(few, real, schema, shown=["when", "x"]))) == 2


def test_real_value_counts_are_computed_once_per_column(monkeypatch):
    """The contracts' quoting rule and meta.disclosure read one set of real value counts per column."""
    from tabtwin.evaluation import disclosure

    calls = []
    counted = disclosure.value_counts
    monkeypatch.setattr(disclosure, "value_counts", lambda series: calls.append(series.name) or counted(series))
    real = people(40, seed=1).drop(columns="customer_id")
    synthetic = real.assign(email="not-an-email", plan="gold")  # failures that would quote values
    schema = infer_schema(real, {"columns": {"email": {"sdtype": "categorical"}}})  # modelled, as in `tables`
    results = evaluate(real, real.iloc[:30], synthetic, schema)
    assert results["contracts"]["n_failed"] and results["meta"]["disclosure"]["columns"]
    assert sorted(calls) == sorted(set(calls)) and set(calls) >= {"email", "plan"}
