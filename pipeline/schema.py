"""Column kinds for a table: inferred from the data, overridable with SDV-style single-table metadata.

A user overrides inference with a JSON file in the SDV single-table format::

    {"columns": {"age": {"sdtype": "numerical", "computer_representation": "Int64"},
                 "joined": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d"},
                 "sex": {"sdtype": "categorical"}},
     "primary_key": "user_id"}

Columns the metadata does not name are still inferred, so a file can fix just the columns inference got wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tabtwin.pipeline.columns.identifier import largest_number
from tabtwin.pipeline.columns.personal import PII_SDTYPES, detect_pii
from tabtwin.pipeline.errors import SchemaError
from tabtwin.pipeline.files import write_json_atomic
from tabtwin.pipeline.forms import model_numbers, parse_text_datetimes

KINDS = ("continuous", "discrete", "datetime", "boolean", "id")

# SDV sdtype -> our kind, and back.
SDTYPE_TO_KIND = {
    "numerical": "continuous",
    "categorical": "discrete",
    "datetime": "datetime",
    "boolean": "boolean",
    "id": "id",
}
KIND_TO_SDTYPE = {kind: sdtype for sdtype, kind in SDTYPE_TO_KIND.items()}

# A numeric column with at most this many distinct values is a code, not a measurement.
MAX_DISCRETE_NUMERIC_VALUES = 10
# Below this many rows "every value is unique" says nothing about being an identifier.
MIN_ROWS_FOR_ID = 20
_ID_NAME = re.compile(r"(^|[_\s-])(id|uuid|guid|key)$", re.IGNORECASE)


@dataclass
class ColumnSpec:
    """One column: its kind, how it is stored, and how often it is null."""

    name: str
    kind: str
    dtype: str = "object"  # pandas dtype of the source column, restored on decode
    null_rate: float = 0.0
    integer: bool = False  # continuous values that are whole numbers come back whole
    datetime_format: str | None = None  # set when datetimes arrive as strings; they go back as strings
    pii: str | None = None  # an id column of personal data: its PII sdtype (`pipeline.columns.personal`), faked
    id_start: int = 0  # an id column's: past the largest number among the table's ids, where regenerated ones start

    @property
    def has_nulls(self) -> bool:
        return self.null_rate > 0


@dataclass
class Schema:
    columns: list[ColumnSpec] = field(default_factory=list)

    def __getitem__(self, name: str) -> ColumnSpec:
        for spec in self.columns:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.columns]

    def of_kind(self, *kinds: str) -> list[ColumnSpec]:
        return [spec for spec in self.columns if spec.kind in kinds]

    def to_dict(self) -> dict:
        return {"columns": [asdict(spec) for spec in self.columns]}

    @classmethod
    def from_dict(cls, data: dict) -> Schema:
        return cls([ColumnSpec(**spec) for spec in data["columns"]])

    def to_metadata(self) -> dict:
        """SDV single-table metadata describing this schema (what `tabtwin schema` writes)."""
        columns = {}
        for spec in self.columns:
            entry = {"sdtype": spec.pii, "pii": True} if spec.pii else {"sdtype": KIND_TO_SDTYPE[spec.kind]}
            if spec.kind == "continuous":
                entry["computer_representation"] = "Int64" if spec.integer else "Float"
            if spec.kind == "datetime" and spec.datetime_format:
                entry["datetime_format"] = spec.datetime_format
            columns[spec.name] = entry
        metadata = {"METADATA_SPEC_VERSION": "SINGLE_TABLE_V1", "columns": columns}
        ids = [spec.name for spec in self.columns if spec.kind == "id" and not spec.pii]
        if len(ids) == 1:
            metadata["primary_key"] = ids[0]
        return metadata


# ---------------------------------------------------------------------------------------------- inference


def infer_schema(df: pd.DataFrame, metadata: dict | None = None) -> Schema:
    """Infer every column's kind; entries in `metadata` (SDV format) override inference."""
    if df.shape[1] == 0:
        raise SchemaError("the table has no columns; nothing to model")
    overrides = _kinds_from_metadata(metadata, df) if metadata is not None else {}
    specs = []
    for name in df.columns:
        if str(name) in overrides:
            kind, datetime_format, representation = overrides[str(name)]
            pii = datetime_format if kind == "pii" else None  # a PII sdtype travels in the format's place
            specs.append(_spec_for(df[name], "id", None) if pii else _spec_for(df[name], kind, datetime_format, representation))
            specs[-1].pii = pii
        else:
            specs.append(infer_column(df[name]))
    return Schema(specs)


def infer_column(series: pd.Series) -> ColumnSpec:
    pii = detect_pii(series)  # personal data is faked, never modelled: a repeated real e-mail would be copied
    spec = _spec_for(series, "id" if pii else _infer_kind(series), None)
    spec.pii = pii
    return spec


# SDV's integer computer representations; a column declared so comes back as whole numbers in that dtype.
_INTEGER_REPRESENTATIONS = ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64")


def _infer_kind(series: pd.Series) -> str:
    values = series.dropna()
    if pd.api.types.is_bool_dtype(series) or (len(values) and _all_python_bools(values)):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    n_rows, n_unique = len(series), values.nunique()
    if pd.api.types.is_timedelta64_dtype(series):  # durations are quantities, modelled in their coarsest unit
        return "continuous"
    if pd.api.types.is_numeric_dtype(series):
        if _looks_like_integer_id(series, values, n_unique):
            return "id"
        return "discrete" if n_unique <= MAX_DISCRETE_NUMERIC_VALUES else "continuous"
    if _parses_as_datetime(values):
        return "datetime"
    if n_rows >= MIN_ROWS_FOR_ID and n_unique == n_rows:
        return "id"
    return "discrete"


def _all_python_bools(values: pd.Series) -> bool:
    return values.map(lambda v: isinstance(v, (bool, np.bool_))).all()


def _looks_like_integer_id(series: pd.Series, values: pd.Series, n_unique: int) -> bool:
    # Unique integers are only an id when the name says so: ages of 20 people can be unique too.
    return (
        pd.api.types.is_integer_dtype(series)
        and len(series) >= MIN_ROWS_FOR_ID
        and n_unique == len(series)
        and bool(_ID_NAME.search(str(series.name)))
    )


def _parses_as_datetime(values: pd.Series) -> bool:
    if len(values) == 0 or not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return False
    sample = values.astype(str).head(1000)
    # Plain numbers ("2021") and very short strings parse as dates but are rarely meant as such.
    if sample.str.fullmatch(r"[+-]?\d+(\.\d+)?").any() or sample.str.len().min() < 6:
        return False
    datetime_format = _guess_format(sample.iloc[0])
    if datetime_format is None:
        return False
    return bool(parse_datetimes(sample, datetime_format).notna().all())


def _guess_format(text: str) -> str | None:
    from pandas.tseries.api import guess_datetime_format

    return guess_datetime_format(text)


def _spec_for(
    series: pd.Series, kind: str, datetime_format: str | None, representation: str | None = None
) -> ColumnSpec:
    name = str(series.name)
    values = series.dropna()
    spec = ColumnSpec(name=name, kind=kind, dtype=str(series.dtype), null_rate=float(series.isna().mean()))
    if kind == "id":  # read on the whole table: a holdout split off later keeps its ids out of reach too
        spec.id_start = largest_number(series) + 1
    if kind == "continuous":
        numeric = _as_numeric(series)
        finite = numeric[np.isfinite(numeric)]  # +-inf are special values, not numbers to round
        spec.integer = bool(len(finite)) and bool(np.all(np.mod(finite, 1) == 0))
        if representation in _INTEGER_REPRESENTATIONS:
            _declare_integer(spec, series, finite, representation)
    elif kind == "boolean" and values.nunique() > 2:
        raise SchemaError(
            f"column {name!r} is declared boolean but has {values.nunique()} distinct values; "
            "mark it categorical in the metadata"
        )
    elif kind == "datetime" and not pd.api.types.is_datetime64_any_dtype(series) and len(values):
        spec.datetime_format = datetime_format or _guess_format(str(values.iloc[0]))
        _check_datetime_strings(series, spec.datetime_format)
    return spec


def _declare_integer(spec: ColumnSpec, series: pd.Series, finite: np.ndarray, representation: str) -> None:
    """Metadata says whole numbers: refuse fractions, and give a float column (one read with blanks) the
    nullable integer dtype named, so its values are written as integers and its blanks stay blank."""
    fractional = finite[np.mod(finite, 1) != 0]
    if len(fractional):
        raise SchemaError(
            f"column {spec.name!r} is declared {representation} in the metadata but holds {float(fractional[0])!r}; "
            "declare it Float or round the values"
        )
    spec.integer = True
    if not pd.api.types.is_integer_dtype(series):
        spec.dtype = representation


def _as_numeric(series: pd.Series) -> np.ndarray:
    """float64 values of a column declared numerical (NaN for nulls, +-inf kept, durations in nanoseconds)."""
    numeric = model_numbers(series)
    bad = np.isnan(numeric) & series.notna().to_numpy()
    if bad.any():
        example = series[bad].iloc[0]
        raise SchemaError(
            f"column {series.name!r} is declared numerical but holds {example!r}; "
            "mark it categorical in the metadata or clean the value"
        )
    return numeric


def parse_datetimes(series: pd.Series, datetime_format: str | None) -> pd.Series:
    """Parse with the column's format; without one, element by element (NaT where that fails). Strings with UTC
    offsets become UTC instants (`pipeline.forms.parse_text_datetimes`), also when the offsets differ."""
    return parse_text_datetimes(series, datetime_format)


def _check_datetime_strings(series: pd.Series, datetime_format: str | None) -> None:
    values = series.dropna().astype(str)
    parsed = parse_datetimes(values, datetime_format)
    if parsed.isna().any():
        example = values[parsed.isna()].iloc[0]
        hint = f"format {datetime_format!r}" if datetime_format else "a recognisable date format"
        raise SchemaError(
            f"column {series.name!r} is declared datetime but {example!r} does not match {hint}; "
            "set datetime_format in the metadata or mark the column categorical"
        )


# ---------------------------------------------------------------------------------------------- metadata


def _kinds_from_metadata(metadata: dict, df: pd.DataFrame) -> dict[str, tuple[str, str | None, str | None]]:
    """{column: (kind, datetime_format, computer_representation)} from SDV metadata (labels as text)."""
    columns = _metadata_columns(metadata)
    labels = [str(label) for label in df.columns]
    missing = [name for name in columns if name not in labels]
    if missing:
        raise SchemaError(
            f"metadata names column(s) {missing} that the table does not have "
            f"(table columns: {list(df.columns)}); fix the names in the metadata"
        )
    kinds = {}
    for name, entry in columns.items():
        sdtype = entry.get("sdtype") if isinstance(entry, dict) else None
        if sdtype in PII_SDTYPES:
            kinds[name] = ("pii", sdtype, None)
            continue
        if sdtype not in SDTYPE_TO_KIND:
            raise SchemaError(
                f"metadata gives column {name!r} the unknown sdtype {sdtype!r}; "
                f"use one of {sorted(SDTYPE_TO_KIND)} or a PII sdtype ({', '.join(PII_SDTYPES)})"
            )
        kinds[name] = (SDTYPE_TO_KIND[sdtype], entry.get("datetime_format"), entry.get("computer_representation"))
    primary_key = _single_table(metadata).get("primary_key")
    if primary_key is not None:
        if primary_key not in labels:
            raise SchemaError(f"metadata primary_key {primary_key!r} is not a column of the table")
        _check_unique(df[df.columns[labels.index(primary_key)]], primary_key)
        if kinds.get(primary_key, ("",))[0] != "pii":  # a key of e-mail addresses stays personal data, faked
            kinds[primary_key] = ("id", None, None)
    return kinds


def _check_unique(series: pd.Series, name: str) -> None:
    """SchemaError unless the primary key `name` holds a value in every row, each value once."""
    missing = int(series.isna().sum())
    if missing:
        rows = "1 row has" if missing == 1 else f"{missing:,} rows have"
        raise SchemaError(f"metadata declares {name!r} the primary key, but {rows} no value in it; a "
                          "primary key identifies every row: fill them or drop primary_key from the metadata")
    repeated = series[series.duplicated(keep=False)]
    if len(repeated):  # counts only: the values may be personal data
        raise SchemaError(f"metadata declares {name!r} the primary key, but {repeated.nunique():,} of its values repeat "
                          f"(in {len(repeated):,} rows); a primary key holds each value once: fix the table or drop "
                          "primary_key from the metadata")


def _single_table(metadata: dict) -> dict:
    """The table-level mapping: the metadata itself, or the one table of multi-table SDV metadata."""
    if not isinstance(metadata, dict):
        raise SchemaError("metadata must be a JSON object with a 'columns' mapping")
    if "tables" in metadata and "columns" not in metadata:
        tables = metadata["tables"]
        if not isinstance(tables, dict) or len(tables) != 1:
            raise SchemaError("metadata describes several tables; give the single-table metadata of one")
        return next(iter(tables.values()))
    return metadata


def _metadata_columns(metadata: dict) -> dict:
    columns = _single_table(metadata).get("columns")
    if not isinstance(columns, dict):
        raise SchemaError("metadata has no 'columns' mapping; expected {\"columns\": {name: {\"sdtype\": ...}}}")
    return columns


def load_metadata(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"metadata file not found: {path}; check the path")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SchemaError(f"metadata file {path} is not valid JSON ({err}); fix the file") from None
    if not isinstance(metadata, dict):
        raise SchemaError(f"metadata file {path} must hold a JSON object with a 'columns' mapping")
    _metadata_columns(metadata)
    return metadata


def save_metadata(schema: Schema, path: str | Path) -> Path:
    return write_json_atomic(schema.to_metadata(), path)

