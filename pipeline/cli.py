"""`tabtwin` command line: a thin shell over the same functions the flows call.

User errors (TabtwinError) print one line and exit 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline.errors import TabtwinError

EXIT_USER_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except TabtwinError as err:
        print(f"tabtwin: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("tabtwin: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tabtwin", description="Synthetic twins of tables, with proof.")
    commands = parser.add_subparsers(dest="command", required=True)

    schema = commands.add_parser("schema", help="infer a table's schema and write it as SDV metadata JSON")
    _add_input_args(schema)
    schema.add_argument("--out", type=Path, help="write the metadata JSON here")
    schema.set_defaults(handler=_cmd_schema)

    encode = commands.add_parser("encode", help="fit the reversible encoder and check the round trip")
    _add_input_args(encode)
    encode.add_argument("--seed", type=int, default=0)
    encode.add_argument("--out", type=Path, help="folder for metadata.json and encoder.json")
    encode.set_defaults(handler=_cmd_encode)
    return parser


def _add_input_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="CSV, TSV, Parquet, SQLite/DuckDB file, or a SQLAlchemy URL")
    parser.add_argument("--table", help="table to read from a database source")
    parser.add_argument("--query", help="SQL query to read from a database source")
    parser.add_argument("--metadata", type=Path, help="SDV single-table metadata JSON that overrides inference")


def _load(args):
    from pipeline.ingest import read_table
    from pipeline.schema import infer_schema, load_metadata

    df = read_table(args.data, table=args.table, query=args.query)
    metadata = load_metadata(args.metadata) if args.metadata else None
    return df, infer_schema(df, metadata)


def _cmd_schema(args) -> int:
    from pipeline.schema import save_metadata

    df, schema = _load(args)
    print(f"{args.data}: {len(df):,} rows x {df.shape[1]} columns")
    for spec in schema.columns:
        extra = " integer" if spec.integer else ""
        extra += f" format={spec.datetime_format}" if spec.datetime_format else ""
        print(f"  {spec.name:<24} {spec.kind:<11} nulls {spec.null_rate:6.1%}{extra}")
    if args.out:
        print(f"metadata written to {save_metadata(schema, args.out)}")
    return 0


def _cmd_encode(args) -> int:
    from pipeline.encoding import TableEncoder, round_trip_errors
    from pipeline.schema import save_metadata

    df, schema = _load(args)
    start = time.perf_counter()
    encoder = TableEncoder(schema, random_state=args.seed).fit(df)
    fitted = time.perf_counter()
    encoded = encoder.transform(df)
    transformed = time.perf_counter()
    decoded = encoder.inverse_transform(encoded)
    inverted = time.perf_counter()
    print(f"{args.data}: {len(df):,} rows x {df.shape[1]} columns -> {encoded.shape[1]} encoded features")
    print(
        f"fit {fitted - start:.2f} s, transform {transformed - fitted:.2f} s, "
        f"inverse {inverted - transformed:.2f} s"
    )
    report = round_trip_errors(df, decoded, schema)
    print(report.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        save_metadata(schema, args.out / "metadata.json")
        encoder.save(args.out / "encoder.json")
        print(f"metadata and encoder written to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
