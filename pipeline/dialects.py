"""How a delimited text file is written, detected from its bytes before pandas reads it: the text encoding, the
delimiter and the decimal mark (a spreadsheet in much of Europe writes `1,5;2.300,75;x`).

- Encoding: a byte-order mark names it (UTF-8, UTF-16; UTF-16 without one is not recognised); else the whole file
  is decoded as UTF-8 incrementally;
  failing that, as Windows-1252 (what spreadsheets on Windows write for Western European text), else as Latin-1,
  which decodes any byte. A file with NUL bytes in its first MiB and no BOM is left to fail as UTF-8 with the
  usual message.
- Delimiter: each of `DELIMITERS` splits the first `SAMPLE_LINES` lines with Python's csv module (quotes
  honoured); one that gives every line, the header included, the same number of fields (more than one) qualifies.
  The suffix's own (comma, or tab for .tsv) wins among those that qualify, else the one giving the most fields;
  when none qualifies, the suffix's own.
- Decimal mark: with a delimiter other than a comma, a column whose every value in the sample is a number written
  with a decimal comma (`1,5`, `-2.300,75`) makes the decimal mark a comma, and the dot the thousands separator
  where such a value groups its digits with it and no value writes a decimal point (`0.25`).

`Dialect.notes()` says what differs from plain UTF-8 comma-separated text, for the schema and the logs.
Sources: https://docs.python.org/3/library/csv.html (csv.reader) and https://docs.python.org/3/library/codecs.html
(incremental decoders).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

DELIMITERS = (",", ";", "\t", "|")
SAMPLE_LINES = 200
CHUNK_BYTES = 1 << 20
NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}

_COMMA_NUMBER = re.compile(r"[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?")  # 1,5  -2.300,75  7
_GROUPED = re.compile(r"[+-]?\d{1,3}(\.\d{3})+(,\d+)?")
_DOT_NUMBER = re.compile(r"[+-]?\d*\.\d+")


@dataclass(frozen=True)
class Dialect:
    """What `pandas.read_csv` needs to read the file: encoding, sep, decimal and thousands."""

    encoding: str = "utf-8"
    delimiter: str = ","
    decimal: str = "."
    thousands: str | None = None

    def read_options(self) -> dict:
        return {"encoding": self.encoding, "sep": self.delimiter, "decimal": self.decimal, "thousands": self.thousands}

    def notes(self, default_delimiter: str = ",") -> list[str]:
        """What was detected that differs from UTF-8 text split by `default_delimiter` with a decimal point."""
        notes = []
        if self.encoding not in ("utf-8", "utf-8-sig"):
            notes.append(f"encoding {self.encoding} (not UTF-8)")
        if self.delimiter != default_delimiter:
            notes.append(f"delimiter {NAMES[self.delimiter]} ({self.delimiter!r})")
        if self.decimal != ".":
            grouped = f", thousands separator {self.thousands!r}" if self.thousands else ""
            notes.append(f"decimal mark {self.decimal!r}{grouped}")
        return notes


def open_bytes(path: Path):
    """The file's bytes, gunzipped for a .gz name."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def detect_encoding(path: Path) -> str:
    """The file's text encoding (see the module docstring)."""
    with open_bytes(path) as stream:
        head = stream.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        stream.seek(0)
        if b"\x00" in stream.read(CHUNK_BYTES):
            return "utf-8"  # binary: no text encoding fits; reading it as UTF-8 fails with the usual message
        stream.seek(0)
        if _decodes(stream, "utf-8"):
            return "utf-8"
        stream.seek(0)
        return "cp1252" if _decodes(stream, "cp1252") else "latin-1"


def _decodes(stream, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        while chunk := stream.read(CHUNK_BYTES):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def sample_lines(path: Path, encoding: str) -> list[str]:
    """The first SAMPLE_LINES lines (of a complete last line), decoded."""
    with open_bytes(path) as stream:
        text = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline="")
        return [line for _, line in zip(range(SAMPLE_LINES), text)]


def detect_delimiter(lines: list[str], default: str) -> str:
    """The delimiter that splits every sampled line into as many fields (see the module docstring)."""
    qualified = {}
    for delimiter in DELIMITERS:
        counts = _field_counts(lines, delimiter)
        if len(counts) == 1 and (fields := counts.pop()) > 1:
            qualified[delimiter] = fields
    if default in qualified or not qualified:
        return default
    return max(qualified, key=qualified.get)


def _field_counts(lines: list[str], delimiter: str) -> set[int]:
    """The numbers of fields the lines split into; none when the csv module cannot split them so (a field past
    its size limit), which leaves the delimiter out."""
    try:
        return {len(row) for row in csv.reader(lines, delimiter=delimiter) if row}
    except csv.Error:
        return set()


def detect_decimal(lines: list[str], delimiter: str) -> tuple[str, str | None]:
    """(decimal mark, thousands separator or None) of the sampled data rows split by `delimiter`."""
    if delimiter == ",":
        return ".", None
    try:
        rows = [row for row in csv.reader(lines[1:], delimiter=delimiter) if row]
    except csv.Error:
        return ".", None
    columns = Counter()  # per column: values that are decimal-comma numbers with a comma, and values that are not
    grouped = dotted = False  # a value 1.234,5 groups digits with dots; a value 0.25 writes a decimal point
    for row in rows:
        for k, value in enumerate(row):
            value = value.strip()
            if not value:
                continue
            dotted |= bool(_DOT_NUMBER.fullmatch(value)) and not _GROUPED.fullmatch(value)
            if not _COMMA_NUMBER.fullmatch(value):
                columns[(k, "other")] += 1
            elif "," in value:
                columns[(k, "comma")] += 1
                grouped |= bool(_GROUPED.fullmatch(value))
    comma = any(count and not columns[(k, "other")] for (k, kind), count in columns.items() if kind == "comma")
    # A dot that is a decimal point somewhere is no thousands separator anywhere: such a value stays text.
    return (",", "." if grouped and not dotted else None) if comma else (".", None)


def detect_dialect(path: Path, default_delimiter: str) -> Dialect:
    """The file's `Dialect` (see the module docstring)."""
    encoding = detect_encoding(path)
    lines = sample_lines(path, encoding)
    if len(lines) == SAMPLE_LINES:
        lines = lines[:-1]  # the last may be cut inside a quoted field
    delimiter = detect_delimiter(lines, default_delimiter)
    decimal, thousands = detect_decimal(lines, delimiter)
    return Dialect(encoding, delimiter, decimal, thousands)
