"""Every value read back from an encoder file checked before it is used: types, ranges and sizes, each field against
the others and against the column it describes.

Model files are checksummed (`generators.persistence`), but a checksum only proves the files are those that were
written: anyone able to edit them can write new checksums. So nothing loaded is trusted. A decimals of -3 rounded
every value to 0.0, min and max swapped clipped every value to one end, a truncated list ended in an IndexError,
deeply nested JSON in a RecursionError; each is now one line (EncodingError) naming the file, the column and the
field.

Each state type declares its fields once (`FIELDS`: a `Rule` per field of `pipeline.rules`, exact key sets, no
extra fields) and its cross-field checks in one function (`_CROSS`); `check_encoder` walks an encoder's JSON with
them. Files are read with `pipeline.rules.read_json` (NaN / Infinity refused, deep nesting one line).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabtwin.pipeline.columns.datetime import UNIT_NS
from tabtwin.pipeline.columns.identifier import MAX_ID_PREFIX, MAX_ID_WIDTH
from tabtwin.pipeline.columns.personal import LOCALES, MAX_MASK, MAX_MASKS, PII_SDTYPES
from tabtwin.pipeline.errors import EncodingError
from tabtwin.pipeline.forms import FORMS_VERSION, MAX_DECIMALS, SPECIALS, check_forms_version
from tabtwin.pipeline.rules import (
    INT64_MAX,
    Dtype,
    Flag,
    Int,
    Items,
    Maybe,
    Num,
    OneOf,
    Rule,
    Scalar,
    StateError,
    Text,
    as_float,
    ascending,
    check_fields,
    fail,
    is_number,
    shown,
    sums_to_one,
)
from tabtwin.pipeline.modes import MAX_TAIL_MODES
from tabtwin.pipeline.schema import KINDS

# Upper bounds on encoder parameters, also enforced when a generator is fitted (a model fitted with them loads).
MAX_MODES = 100
MAX_BINS = 4096
MAX_EXACT = 1_000_000
MAX_CODES = 1_000_000  # max_categories
MAX_SEED = INT64_MAX
_INT64_NS = 2.0**63  # datetimes decode through int64 nanoseconds


# ---------------------------------------------------------------------------------------------- declarations

_NAME = Text(10_000)
_UNITS = tuple(UNIT_NS)
_FORMAT = Maybe(Text(200))
SPEC = {"name": _NAME, "kind": OneOf(KINDS), "dtype": Dtype(), "null_rate": Num(0.0, 1.0), "integer": Flag(),
        "datetime_format": _FORMAT, "pii": Maybe(OneOf(PII_SDTYPES)), "id_start": Int(0, INT64_MAX)}
FORM = {
    "name": _NAME, "label": Rule(), "dtype": Dtype(), "decimals": Maybe(Int(0, MAX_DECIMALS)),
    "specials": Items(OneOf(tuple(SPECIALS)), len(SPECIALS)), "categories": Maybe(Items(Scalar())), "ordered": Flag(),
    "python_type": Maybe(OneOf(("date",))), "text_format": _FORMAT, "fraction_digits": Maybe(Int(0, 9)),
    "utc_offset_minutes": Maybe(Int(-1439, 1439)), "offset_style": Maybe(OneOf(("Z", "+HH:MM", "+HHMM", "+HH"))),
    "mixed_offsets": Flag(),
}
_DATETIME = {"datetime_unit": Maybe(OneOf(_UNITS)), "datetime_format": _FORMAT, "timezone": Maybe(Text(100))}
_TYPE = {"type": Rule()}
FIELDS = {
    "_Continuous": {
        **_TYPE, "name": _NAME, "dtype": Dtype(), "has_nulls": Flag(), "integer": Flag(), "minimum": Num(),
        "maximum": Num(), "weights": Items(Num(0.0, 1.0)), "means": Items(Num()), "stds": Items(Num(0.0)),
        "scales": Items(Num(0.0)), **_DATETIME,
    },
    "numeric": {
        **_TYPE, "name": _NAME, "dtype": Dtype(), "integer": Flag(), "decimals": Maybe(Int(0, MAX_DECIMALS)),
        "has_nulls": Flag(), "points": Items(Num()), "edges": Items(Items(Num())), **_DATETIME,
        "specials": Items(OneOf(tuple(SPECIALS)), len(SPECIALS)),
    },
    "categorical": {**_TYPE, "base": Rule(), "kept": Items(Int()), "rare": Items(Int()), "rare_weights": Items(Num(0.0, 1.0))},
    "id": {**_TYPE, "name": _NAME, "dtype": Dtype(), "integer": Flag(), "prefix": Text(MAX_ID_PREFIX),
           "width": Int(1, MAX_ID_WIDTH), "start": Int(0, INT64_MAX), "pii": Maybe(OneOf(PII_SDTYPES)),
           "locale": Maybe(OneOf(LOCALES)), "masks": Items(Text(MAX_MASK), MAX_MASKS),
           "shares": Items(Num(0.0, 1.0), MAX_MASKS), "null_share": Num(0.0, 1.0)},
}
FIELDS.update(_Categorical=FIELDS["categorical"], _Identifier=FIELDS["id"])  # TableEncoder's tags, same states
DISCRETE = {"name": _NAME, "dtype": Dtype(), "has_nulls": Flag(), "categories": Items(Scalar())}  # a categorical's base
# Each encoder: its parameters, and the type tag of its numeric, categorical and id states.
ENCODERS = {
    "table": {
        "params": {"max_modes": Int(1, MAX_MODES), "weight_threshold": Num(0.0, 1.0), "max_fit_rows": Int(1, 10**9),
                   "random_state": Maybe(Int(0, MAX_SEED)), "max_categories": Maybe(Int(1, MAX_CODES))},
        "tags": {"continuous": "_Continuous", "discrete": "_Categorical", "id": "_Identifier"},
    },
    "binned": {
        "params": {"n_bins": Int(1, MAX_BINS), "max_exact": Int(1, MAX_EXACT), "spike_share": Num(0.0, 1.0, open_low=True),
                   "max_categories": Int(1, MAX_CODES)},
        "tags": {"continuous": "numeric", "discrete": "categorical", "id": "id"},
    },
}


# ---------------------------------------------------------------------------------------------- encoder


def check_encoder(data, kind: str, source: str) -> None:
    """Refuse an encoder's JSON (`kind` "table" for TableEncoder, "binned" for BinnedEncoder) unless every field
    is valid and consistent: EncodingError, one line naming `source`, the column and the field."""
    declared = ENCODERS[kind]
    if not isinstance(data, dict) or any(key not in data for key in ("params", "schema", "columns")):
        lacks = [k for k in ("params", "schema", "columns") if not isinstance(data, dict) or k not in data]
        raise EncodingError(f"{source} is incomplete or from another version (lacks {lacks}); refit the model")
    try:
        check_forms_version(data.get("forms"))
    except EncodingError as err:
        raise EncodingError(f"{source}: {err}") from None
    try:
        check_fields(data, {"params": Rule(), "schema": Rule(), "columns": Rule(), "forms": Rule()}, "the encoder")
        params = check_fields(data["params"], declared["params"], "params")
        specs = _check_schema(data["schema"])
        forms = _check_forms(data["forms"], specs)
        columns = data["columns"]
        if not isinstance(columns, list) or len(columns) != len(specs):
            fail("columns", f"must list the schema's {len(specs)} columns, got {shown(columns)}")
        for spec, form, state in zip(specs, forms, columns):
            _check_state(state, spec, form, params, declared["tags"])
    except StateError as err:
        raise EncodingError(f"{source} is invalid: {err}; refit the model") from None


def _check_schema(schema) -> list[dict]:
    check_fields(schema, {"columns": Items(Rule())}, "schema")
    specs = schema["columns"]
    if not specs:
        fail("schema", "has no columns")
    for i, spec in enumerate(specs):
        check_fields(spec, SPEC, f"schema column {i}")
    names = [spec["name"] for spec in specs]
    if len(set(names)) < len(names):
        fail("schema", f"names column(s) {sorted({n for n in names if names.count(n) > 1})[:5]} twice")
    if all(spec["kind"] == "id" for spec in specs):
        fail("schema", "has only id columns")
    return specs


def _check_forms(forms: dict, specs: list[dict]) -> list[dict]:
    check_fields(forms, {"version": OneOf((FORMS_VERSION,)), "columns": Items(Rule())}, "forms")
    entries = forms["columns"]
    if len(entries) != len(specs):
        fail("forms", f"must describe the schema's {len(specs)} columns, got {len(entries)}")
    for spec, form in zip(specs, entries):
        where = f"column {spec['name']!r}, form"
        check_fields(form, FORM, where)
        label = form["label"]
        if not (label is None or isinstance(label, (str, bool)) or as_float(label) is not None):
            fail(where, f"label must be text or a number, got {shown(label)}")
        # A float label's text may differ from the name (a float32 0.1 saved as 0.10000000149011612); others may not.
        same_label = label is None or isinstance(label, float) or str(label) == spec["name"]
        if form["name"] != spec["name"] or not same_label or form["dtype"] != spec["dtype"]:
            fail(where, "name, label or dtype does not match the schema")
        _check_form_kind(form, spec, where)
        if form["categories"] is not None:
            _unique_values(form["categories"], where, "categories")
    return entries


def _check_form_kind(form: dict, spec: dict, where: str) -> None:
    """Each part of a form belongs to one kind of column (`forms.column_form`)."""
    kind = spec["kind"]
    if form["decimals"] is not None and (kind != "continuous" or spec["integer"]):
        fail(where, f"decimals are only kept for non-integer continuous columns, not this {kind} column")
    if form["specials"] and kind != "continuous":
        fail(where, f"specials (inf) only occur in continuous columns, not this {kind} column")
    if len(set(form["specials"])) < len(form["specials"]):
        fail(where, "specials must not repeat")
    text = ("text_format", "fraction_digits", "utc_offset_minutes", "offset_style")
    if any(form[key] is not None for key in text) and (kind != "datetime" or spec["datetime_format"] is None):
        fail(where, "datetime text fields only belong to a datetime column read from text")
    if form["python_type"] is not None and kind != "datetime":
        fail(where, "python_type 'date' only belongs to a datetime column")
    if (form["offset_style"] is None) != (form["utc_offset_minutes"] is None):
        fail(where, "offset_style and utc_offset_minutes must be set together")


def _check_state(state, spec: dict, form: dict, params: dict, tags: dict) -> None:
    kind = {"datetime": "continuous", "boolean": "discrete"}.get(spec["kind"], spec["kind"])
    where = f"column {spec['name']!r}"
    tag = tags[kind]
    if not isinstance(state, dict) or state.get("type") != tag:
        fail(where, f"must be a {tag!r} state for a {spec['kind']} column")
    check_fields(state, FIELDS[tag], where)
    base = state["base"] if "base" in state else state
    if "base" in state:
        check_fields(base, DISCRETE, where)
    if base["name"] != spec["name"] or base["dtype"] != spec["dtype"]:
        fail(where, f"name or dtype does not match the schema ({spec['name']!r}, {spec['dtype']!r})")
    _CROSS[tag](state, spec, form, params, where)


# ---------------------------------------------------------------------------------------------- cross-field


def _check_continuous(state: dict, spec: dict, form: dict, params: dict, where: str) -> None:
    n = len(state["means"])
    most = params["max_modes"] + max(1, params["max_modes"] // 2) + MAX_TAIL_MODES  # mixture, spikes, tails
    if not 1 <= n <= most or any(len(state[key]) != n for key in ("weights", "stds", "scales")):
        fail(where, f"means, weights, stds and scales must have the same length, from 1 to {most}")
    sums_to_one(state["weights"], where, "weights", tolerance=1e-6)
    if any((std == 0) != (scale == 0) for std, scale in zip(state["stds"], state["scales"])):
        fail(where, "stds and scales must be zero for the same (exact) modes")
    if state["minimum"] > state["maximum"]:
        fail(where, f"minimum {state['minimum']!r} is above maximum {state['maximum']!r}")
    if state["integer"] != spec["integer"]:
        fail(where, "integer does not match the schema")
    if form["specials"] and not state["has_nulls"]:
        fail(where, "a column with specials (inf) needs its null span (has_nulls)")
    _check_units(state, spec, [state["minimum"], state["maximum"]], where)


def _check_numeric(state: dict, spec: dict, form: dict, params: dict, where: str) -> None:
    from tabtwin.pipeline.binning import SUB_BINS  # the encoders import this module

    points, edges = state["points"], state["edges"]
    ascending(points, where, "points")
    most_points = max(params["max_exact"], int(1 / params["spike_share"]))
    if len(points) > most_points:
        fail(where, f"points must number at most {most_points}, got {len(points)}")
    if len(edges) > params["n_bins"]:
        fail(where, f"edges must hold at most n_bins = {params['n_bins']} bins, got {len(edges)}")
    for k, bin_edges in enumerate(edges):
        if len(bin_edges) != SUB_BINS + 1:
            fail(where, f"edges[{k}] must hold {SUB_BINS + 1} values, got {len(bin_edges)}")
    ascending([value for bin_edges in edges for value in bin_edges], where, "edges", strict=False)
    if state["integer"] != (spec["integer"] or state["datetime_unit"] is not None):
        fail(where, "integer does not match the schema")
    if state["integer"] and state["decimals"] != 0:
        fail(where, f"decimals of an integer column must be 0, got {state['decimals']!r}")
    if sorted(state["specials"]) != sorted(form["specials"]) or len(set(state["specials"])) < len(state["specials"]):
        fail(where, "specials do not match the column's form")
    if not (points or edges or state["specials"] or state["has_nulls"]):
        fail(where, "has no codes (no points, bins, specials or nulls)")
    _check_units(state, spec, points + [value for bin_edges in edges for value in (bin_edges[:1] + bin_edges[-1:])], where)


def _check_units(state: dict, spec: dict, values: list, where: str) -> None:
    """Datetime and duration columns are counts of a unit, decoded through int64 nanoseconds."""
    unit = state["datetime_unit"]
    counted = spec["kind"] == "datetime" or spec["dtype"].startswith("timedelta64")
    if (unit is not None) != counted:
        fail(where, f"datetime_unit must be {'set' if counted else 'null'} for this {spec['kind']} column")
    if state["datetime_format"] != spec["datetime_format"]:
        fail(where, "datetime_format does not match the schema")
    if state["timezone"] is not None:
        if spec["kind"] != "datetime":
            fail(where, "timezone only belongs to a datetime column")
        try:
            pd.DatetimeTZDtype(tz=state["timezone"])
        except Exception:  # pytz and zoneinfo raise their own errors for an unknown zone
            fail(where, f"timezone {shown(state['timezone'])} is not a known time zone")
    if unit is not None and values and max(abs(v) for v in values) * UNIT_NS[unit] >= _INT64_NS:
        fail(where, f"values are outside the datetimes that {unit} counts can hold")
    _fits_dtype(values, spec["dtype"], where, "values")


def _check_categorical(state: dict, spec: dict, form: dict, params: dict, where: str) -> None:
    base = state["base"]
    categories, kept, rare, weights = base["categories"], state["kept"], state["rare"], state["rare_weights"]
    _unique_values(categories, where, "categories")
    _fits_dtype(categories, base["dtype"], where, "categories")
    if spec["kind"] == "boolean" and len(categories) > 2:
        fail(where, f"a boolean column holds at most 2 values, got {len(categories)}")
    ascending(kept, where, "kept")
    ascending(rare, where, "rare")
    if sorted(kept + rare) != list(range(len(categories))):
        fail(where, f"kept and rare must split the {len(categories)} category indices between them")
    cap = params["max_categories"]
    if (cap is None and rare) or (cap is not None and (len(kept) > cap or (rare and len(kept) != cap))):
        fail(where, f"kept must hold every category up to max_categories = {cap}, and only then rare ones")
    if len(weights) != len(rare):
        fail(where, f"rare_weights must have one weight per rare category ({len(rare)}), got {len(weights)}")
    if rare:
        sums_to_one(weights, where, "rare_weights")
    if not (categories or base["has_nulls"]):
        fail(where, "has no categories and no nulls")


def _check_identifier(state: dict, spec: dict, form: dict, params: dict, where: str) -> None:
    if state["integer"] and not pd.api.types.is_integer_dtype(pd.api.types.pandas_dtype(state["dtype"])):
        fail(where, f"integer ids need an integer dtype, got {state['dtype']!r}")
    if state["integer"]:
        _fits_dtype([state["start"]], state["dtype"], where, "start")
    if len(state["masks"]) != len(state["shares"]) or (state["masks"] and not sum(state["shares"]) > 0):
        fail(where, "masks and shares must be as many, the shares summing to more than 0")


def _fits_dtype(values: list, dtype: str, where: str, field: str) -> None:
    """Numbers decoded into a numeric dtype must fit it: numpy casts a larger one to garbage (1e300 to an int64
    -2**63) or raises OverflowError (2**63 to an int64)."""
    kind = pd.api.types.pandas_dtype(dtype)
    if not (pd.api.types.is_integer_dtype(kind) or pd.api.types.is_float_dtype(kind)):
        return
    kind = getattr(kind, "numpy_dtype", kind)  # a nullable Int64's int64
    info = np.iinfo(kind) if pd.api.types.is_integer_dtype(kind) else np.finfo(kind)
    low, high = (int(info.min), int(info.max)) if isinstance(info, np.iinfo) else (float(info.min), float(info.max))
    if any(is_number(v) and not low <= v <= high for v in values):
        fail(where, f"{field} must fit the column's dtype {dtype} (from {low:g} to {high:g})")


def _unique_values(values: list, where: str, field: str) -> None:
    from tabtwin.pipeline.forms import category_from_json

    if not pd.Index([category_from_json(v) for v in values], dtype=object).is_unique:
        fail(where, f"{field} must not repeat a value")


_CROSS = {"_Continuous": _check_continuous, "numeric": _check_numeric, "categorical": _check_categorical,
          "_Categorical": _check_categorical, "id": _check_identifier, "_Identifier": _check_identifier}
