"""The form each column came in, recorded at fit and put back after decoding, for every encoder.

An encoder models values; a user reads a table. `column_form(spec, facts)` records, per column and from the facts
its statistics gathered (`pipeline.columns`), what a decoded value needs beyond its number or category to be
written as the source wrote it:

- the column label as given (an integer label such as 0 stays 0; encoders work on its text, `text_labels`);
- the pandas dtype (`Int64` for whole numbers with blanks, `timedelta64`, `category` with its full category list
  and order, `datetime64` with its unit and zone, python `datetime.date` objects);
- the number of decimals of a non-integer numeric column (a price with 2 decimals comes back with 2);
- the special values +inf / -inf of a numeric column (encoders give them their own codes; they are not numbers
  to model);
- for datetimes held as text: a strftime format that writes the seen strings back exactly, with the fraction
  of a second cut to its written digits and the UTC offset written in its style (`Z`, `+05:00`, `+0500`).
  Strings with several different offsets are modelled as UTC instants and written back with the offset most
  of them carried (`mixed_offsets` is then true: the instant is kept, the offset normalised).

`restore(frame, forms)` applies them to a decoded frame (text labels, model dtypes) and returns the frame in
the source's form. Forms save as plain JSON (`forms_to_json`, `forms_from_json`), inside the encoder's file.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from tabtwin.pipeline.errors import EncodingError
from tabtwin.pipeline.jsonable import jsonable

# Version of what encoders save about forms; an encoder file without it predates them and is refused.
FORMS_VERSION = 1
MAX_DECIMALS = 8  # past this a column keeps full precision (no rounding)
SPECIALS = {"inf": math.inf, "-inf": -math.inf}
_OFFSET = re.compile(r"(Z|[+-]\d{2}(?::?\d{2})?)\s*$")
_HAS_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)\s*$")
_FRACTION = re.compile(r"\d[.,](\d{1,9})(?!\d)")
TEXT_SAMPLE = 1000  # strings checked when choosing how to write datetimes back
DECIMALS_SAMPLE = 10_000  # numbers checked when choosing a column's decimals


@dataclass
class ColumnForm:
    """How one column was written: see the module docstring."""

    name: str  # the label as text: what the schema and the encoders call the column
    label: str | int | float | bool  # the label as given
    dtype: str
    decimals: int | None = None
    specials: list[str] = field(default_factory=list)  # keys of SPECIALS present in the column
    categories: list | None = None  # a pandas `category` column's categories, in order
    ordered: bool = False
    python_type: str | None = None  # "date": an object column of datetime.date values
    text_format: str | None = None  # datetimes as text: strftime format without fraction digits or offset
    fraction_digits: int | None = None  # digits after the seconds' point, replacing the format's %f
    utc_offset_minutes: int | None = None  # text with offsets: written back at this offset
    offset_style: str | None = None  # "Z", "+HH:MM", "+HHMM" or "+HH"
    mixed_offsets: bool = False


# ---------------------------------------------------------------------------------------------- labels


def text_labels(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every column label as text (the data is not copied). Raises EncodingError for a label that is
    not text, a number or a bool (a tuple of a MultiIndex), or for two labels with the same text (1 and "1")."""
    labels = list(df.columns)
    if all(isinstance(label, str) for label in labels):
        return df
    for label in labels:
        if not isinstance(label, (str, int, float, bool, np.integer, np.floating, np.bool_)):
            raise EncodingError(
                f"column label {label!r} is a {type(label).__name__}; labels must be text or numbers "
                "(flatten or rename the columns)"
            )
    texts = [str(label) for label in labels]
    if len(set(texts)) < len(texts):
        clash = sorted({t for t in texts if texts.count(t) > 1})
        raise EncodingError(f"column labels {clash} are the same as text (e.g. 1 and '1'); rename one of them")
    out = df.copy(deep=False)
    out.columns = texts
    return out


# ---------------------------------------------------------------------------------------------- fit


@dataclass
class FormFacts:
    """What a column's statistics (`pipeline.columns`) saw that its form needs: the label as given, a pandas
    `category` dtype's categories, the special values present, the first finite numbers (for decimals), whether
    every value was a `datetime.date`, and the first datetime strings (for their text format)."""

    label: object
    categories: list | None = None
    ordered: bool = False
    specials: list[str] = field(default_factory=list)
    finite_head: np.ndarray | None = None
    float32: bool = False
    all_dates: bool = False
    text_head: list[str] | None = None


def column_form(spec, facts: FormFacts) -> ColumnForm:
    """The form of the `spec` schema column, from the facts its statistics gathered."""
    form = ColumnForm(name=spec.name, label=jsonable(facts.label), dtype=spec.dtype)
    if facts.categories is not None:
        form.categories = [jsonable(v) for v in facts.categories]
        form.ordered = facts.ordered
    if spec.kind == "continuous":
        form.specials = list(facts.specials)
        if not spec.integer and not is_timedelta(spec.dtype):
            form.decimals = decimals_of(facts.finite_head, float32=facts.float32)
    elif spec.kind == "datetime":
        if facts.all_dates:
            form.python_type = "date"
        elif spec.datetime_format:
            _fit_text_datetimes(form, pd.Series(facts.text_head or [], dtype=object), spec.datetime_format)
    return form


def decimals_of(finite: np.ndarray, float32: bool = False) -> int | None:
    """The fewest decimals (0..MAX_DECIMALS) that write every value exactly, or None (keep full precision).

    With `float32`, "exactly" means the rounded value is the same float32 (1.1 is stored as 1.10000002).
    """
    sample = np.asarray(finite, dtype=np.float64)[:DECIMALS_SAMPLE]
    if len(sample) == 0:
        return None
    tolerance = 1e-12 * np.maximum(1.0, np.abs(sample))  # per value: a huge value must not excuse a small one
    for d in range(MAX_DECIMALS + 1):
        rounded = np.round(sample, d)
        if float32:
            if np.array_equal(rounded.astype(np.float32), sample.astype(np.float32)):
                return d
        elif np.all(np.abs(rounded - sample) <= tolerance):
            return d
    return None


def is_timedelta(dtype: str) -> bool:
    return str(dtype).startswith("timedelta64")


def model_numbers(series: pd.Series) -> np.ndarray:
    """A numeric column as float64 (NaN for nulls, +-inf kept); durations in nanoseconds."""
    if pd.api.types.is_timedelta64_dtype(series):
        nanos = series.astype("timedelta64[ns]").to_numpy().astype(np.int64).astype(np.float64)
        return np.where(series.isna().to_numpy(), np.nan, nanos)
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float).to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def all_dates(series: pd.Series) -> bool:
    """Whether every value of `series` (nulls dropped) is a `datetime.date`, not a datetime (True when none is
    left: a chunk of nulls does not decide)."""
    values = series.dropna()
    return series.dtype == object and bool(
        values.map(lambda v: isinstance(v, _dt.date) and not isinstance(v, _dt.datetime)).all()
    )


def parse_text_datetimes(texts: pd.Series, datetime_format: str | None) -> pd.Series:
    """Strings to datetime64; strings with UTC offsets (`%z`) become UTC instants, so that several different
    offsets in one column parse too. NaT where a string does not parse."""
    utc = datetime_format is not None and "%z" in datetime_format
    if datetime_format is None:
        sample = texts.dropna().astype(str).head(TEXT_SAMPLE)
        utc = bool(len(sample)) and bool(sample.str.contains(_HAS_OFFSET).all()) and bool(sample.str.contains(r"\d:\d").any())
    return pd.to_datetime(texts, format=datetime_format or "mixed", errors="coerce", utc=utc)


def _fit_text_datetimes(form: ColumnForm, texts: pd.Series, datetime_format: str) -> None:
    """Choose how to write this column's instants as text so that the seen strings come back exactly."""
    sample = texts.head(TEXT_SAMPLE).reset_index(drop=True)
    base = datetime_format
    if "%z" in datetime_format:
        offsets = sample.str.extract(_OFFSET)[0]
        if offsets.notna().all():
            minutes = offsets.map(_offset_minutes)
            form.utc_offset_minutes = int(minutes.mode().iloc[0])
            form.offset_style = _offset_style(offsets.mode().iloc[0])
            form.mixed_offsets = bool(minutes.nunique() > 1)
            base = datetime_format.replace("%z", "")
    form.text_format = base
    if "%f" not in base:
        return
    # The format's %f writes 6 digits; keep the count the strings were written with where one fits them all.
    instants = _naive_utc(parse_text_datetimes(sample, datetime_format))
    best, best_matches = None, -1
    for digits in sorted({len(m) for m in sample.str.extract(_FRACTION)[0].dropna()} | {6}):
        form.fraction_digits = digits
        matches = int((render_datetimes(instants, form) == sample).sum())
        if matches > best_matches:
            best, best_matches = digits, matches
    form.fraction_digits = best


def _offset_minutes(text: str) -> int:
    if text == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * (int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) >= 4 else 0))


def _offset_style(text: str) -> str:
    if text == "Z":
        return "Z"
    if ":" in text:
        return "+HH:MM"
    return "+HHMM" if len(text) == 5 else "+HH"


def _offset_text(minutes: int, style: str) -> str:
    if style == "Z" and minutes == 0:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    if style == "+HHMM":
        return f"{sign}{hours:02d}{mins:02d}"
    if style == "+HH" and mins == 0:
        return f"{sign}{hours:02d}"
    return f"{sign}{hours:02d}:{mins:02d}"


def _naive_utc(stamps: pd.Series) -> pd.Series:
    if getattr(stamps.dt, "tz", None) is not None:
        return stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps


# ---------------------------------------------------------------------------------------------- restore


def render_datetimes(instants: pd.Series, form: ColumnForm) -> pd.Series:
    """Naive UTC (or zone-aware) datetimes as the column's strings (object dtype, NaN for NaT)."""
    valid = instants.notna()
    local = instants
    if form.utc_offset_minutes is not None:
        zone = _dt.timezone(_dt.timedelta(minutes=form.utc_offset_minutes))
        aware = local if getattr(local.dt, "tz", None) is not None else local.dt.tz_localize("UTC")
        local = aware.dt.tz_convert(zone)
    fmt = form.text_format or ""
    if form.fraction_digits is not None and "%f" in fmt:
        before, after = fmt.split("%f", 1)
        nanos = local.dt.microsecond.fillna(0).astype(np.int64) * 1000 + local.dt.nanosecond.fillna(0).astype(np.int64)
        digits = form.fraction_digits
        fraction = (nanos // 10 ** (9 - digits)).astype(str).str.zfill(digits)
        text = local.dt.strftime(before) + fraction + (local.dt.strftime(after) if after else "")
    else:
        text = local.dt.strftime(fmt)
    if form.offset_style is not None:
        text = text + _offset_text(form.utc_offset_minutes or 0, form.offset_style)
    return text.astype(object).where(valid, np.nan)


def restore(frame: pd.DataFrame, forms: list[ColumnForm]) -> pd.DataFrame:
    """The decoded `frame` (text labels) with every column put back in its recorded form and label."""
    kept = [form for form in forms if form.name in frame.columns]
    out = pd.DataFrame({form.name: restore_column(frame[form.name], form) for form in kept}, index=range(len(frame)))
    if any(not isinstance(form.label, str) for form in kept):
        out.columns = [form.label for form in kept]
    return out


def restore_column(series: pd.Series, form: ColumnForm) -> pd.Series:
    series = series.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(series):
        if form.python_type == "date":
            return series.dt.date.astype(object).where(series.notna(), np.nan)
        if form.text_format is not None:
            return render_datetimes(series, form)
    if form.decimals is not None and pd.api.types.is_float_dtype(series):
        series = series.round(form.decimals)
    if is_timedelta(form.dtype) and not pd.api.types.is_timedelta64_dtype(series):
        nanos = pd.to_numeric(series, errors="coerce").round()
        return pd.to_timedelta(nanos, unit="ns").astype(form.dtype)
    if form.categories is not None:
        return pd.Series(pd.Categorical(series.astype(object), categories=form.categories, ordered=form.ordered))
    return restore_dtype(series, form.dtype)


def restore_dtype(series: pd.Series, dtype: str) -> pd.Series:
    """Cast back to the source dtype; a plain int/bool column that gained nulls becomes its nullable twin."""
    if dtype == "object":
        return series.astype(object)
    if str(series.dtype) == dtype:
        return series
    try:
        if series.isna().any() and dtype.startswith(("int", "uint")):
            return series.astype(dtype.capitalize().replace("Uint", "UInt"))
        if series.isna().any() and dtype == "bool":
            return series.astype("boolean")
        return series.astype(dtype)
    except (TypeError, ValueError):
        return series


# ---------------------------------------------------------------------------------------------- JSON


def forms_to_json(forms: list[ColumnForm]) -> dict:
    return {"version": FORMS_VERSION, "columns": [jsonable(asdict(form)) for form in forms]}


def check_forms_version(data) -> None:
    """EncodingError naming what to do unless `data` holds forms saved by this version's `forms_to_json`."""
    if not isinstance(data, dict) or data.get("version") != FORMS_VERSION:
        raise EncodingError(
            "the encoder file has no column forms (written by an older tabtwin) or forms of another version; "
            "refit the model"
        )


def forms_from_json(data) -> list[ColumnForm]:
    """Forms saved by `forms_to_json` (their fields are checked by `pipeline.validation.check_encoder`);
    EncodingError naming what to do when absent or from another version."""
    check_forms_version(data)
    try:
        return [ColumnForm(**entry) for entry in data["columns"]]
    except (KeyError, TypeError) as err:
        raise EncodingError(f"the encoder file's column forms are incomplete ({err}); refit the model") from None


def category_to_json(value):
    """A category value as JSON; +-inf (which JSON lacks) as {"special": "inf"}."""
    if isinstance(value, (float, np.floating)) and math.isinf(value):
        return {"special": "inf" if value > 0 else "-inf"}
    return jsonable(value)


def category_from_json(value):
    if isinstance(value, dict) and value.get("special") in SPECIALS:
        return SPECIALS[value["special"]]
    return value
