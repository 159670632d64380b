"""The command line's arguments, built from the one declaration of a run's parameters (`flows.spec`).

Every --help shows every default; a bad argument is one line on stderr and exit code 2. `tabtwin run`'s and
`tabtwin deploy`'s flags are RunSpec's and Places' fields, with their defaults, help texts, choices and checks.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from pathlib import Path

from tabtwin.flows.spec import Places, RunSpec
from tabtwin.pipeline.errors import TabtwinError

EXIT_USER_ERROR = 2
EXIT_GATE_FAILED = 3


class Parser(argparse.ArgumentParser):
    """Every --help shows every default; a bad argument is one line on stderr and exit 2 (argparse's code)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out that tabtwin did not write (never an input, the current "
                             "folder or a folder above it); without it only tabtwin's own outputs are replaced")


def positive_int(text: str) -> int:
    """argparse type: a whole number > 0 (a zero batch size or epoch count is refused here, in one line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def spec_help(name: str) -> str:
    return next(f.metadata.get("help", "") for f in fields(RunSpec) if f.name == name)


def add_spec_arguments(parser: argparse.ArgumentParser, names, many=()) -> None:
    """Flags for these RunSpec fields, with RunSpec's defaults, help texts, choices and checks.

    A field in `many` takes one or more values (`run --model ctgan tvae`), its default a one-item list.
    """
    by_name = {f.name: f for f in fields(RunSpec)}
    for name in names:
        f = by_name[name]
        default = None if f.default is MISSING else f.default
        options = {"help": f.metadata.get("help", ""), "default": default}
        kind = base_type(f.type)
        if f.metadata.get("positive"):
            options["type"] = positive_float if kind is float else positive_int
        elif kind in (int, float):
            options["type"] = kind
        if "choices" in f.metadata:
            options["choices"] = list(f.metadata["choices"])
        if name in many:
            options.update(nargs="+", default=[default])
        parser.add_argument(flag(name), dest=name, **options)


def add_places_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(Places):
        parser.add_argument(flag(f.name), dest=f.name, default=f.default, help=f.metadata.get("help", ""))


def add_runner_arguments(parser: argparse.ArgumentParser, dask_does: str) -> None:
    """--runner local|dask, --dask-address and --dask-workers (`flows.cluster.dask_client` reads the last two)."""
    parser.add_argument("--runner", choices=["local", "dask"], default="local",
                        help=f"local: this process does the work; dask: {dask_does} on a Dask cluster")
    parser.add_argument("--dask-address", help="scheduler address (None: a LocalCluster of --dask-workers workers)")
    parser.add_argument("--dask-workers", type=positive_int, default=2, help="workers of the LocalCluster")


def base_type(annotation) -> type | None:
    """int for "int" or "int | None" (the annotations are strings under `from __future__ import annotations`)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    first = text.split("|")[0].strip()
    return {"int": int, "float": float, "str": str}.get(first)


def parse_conditions(items: list[str]) -> dict[str, str]:
    """["sex=Female", "income=>50K"] -> {"sex": "Female", "income": ">50K"} (split at the first '=')."""
    conditions = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise TabtwinError(f"condition {item!r} is not COLUMN=VALUE; write e.g. --condition sex=Female")
        conditions[column] = value
    return conditions


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="CSV, TSV, Parquet, .xlsx, JSON Lines, SQLite/DuckDB file, or a SQLAlchemy URL")
    parser.add_argument("--table", help="table to read from a database source, or sheet of an .xlsx workbook")
    parser.add_argument("--query", help="SQL query to read from a database source")
    parser.add_argument("--metadata", type=Path, help="SDV single-table metadata JSON that overrides inference")


