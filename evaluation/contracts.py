r"""Data contracts: Great Expectations rules learned from the REAL table, checked on the SYNTHETIC one.

`build_suite(real, schema)` derives one `gx.ExpectationSuite` from the real table; `check_contracts(synthetic,
suite)` runs the whole suite once, on one batch, and returns a JSON-able summary; `contracts_report(...)` does
both and is what the evaluation calls. The expectations, column by column, are those of
evaluation/contract_rules.py; a failed one becomes a sentence in evaluation/contract_failures.py.

Great Expectations runs offline here: the context is an in-memory ephemeral one built from a config with
``analytics_enabled=False`` and progress bars switched off (``progress_bars`` in the context config, which
the validator reads; without it GX prints "Calculating Metrics" tqdm bars), and ``GX_ANALYTICS_ENABLED`` is
set to ``false`` before GX is imported. GX is imported lazily (it takes seconds), the first time a suite is
built or checked.
"""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pandas as pd

from tabtwin.evaluation.contract_failures import MAX_EXAMPLES, failure, result_key
from tabtwin.evaluation.contract_rules import column_rules
from tabtwin.evaluation.disclosure import MIN_COUNT, Shown
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.schema import Schema

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx

SUITE_NAME = "tabtwin_contracts"


def build_suite(
    real: pd.DataFrame, schema: Schema, null_tolerance: float = 0.05, *, range_mostly: float = 1.0,
    min_count: int = MIN_COUNT, share_tolerance: float = 0.05,
) -> "gx.ExpectationSuite":
    """Expectations learned from `real`, one set per schema column (evaluation/contract_rules.py).

    `range_mostly` is the share of non-null values that must lie in the real range (GX's `mostly`); 1.0, the
    default, suits our generators, whose decoder clips to the seen range. An independent draw from the same
    distribution falls outside the range of n real rows with probability about 2/(n+1) per value, so checking
    data that is not clipped calls for a little less (say 0.99). `min_count` (k) is the number of real rows
    that must hold a value before the suite names it; `share_tolerance` how far (absolute) the share of values
    matching a column's common values or shapes may fall below the real share. Raises ValueError for
    tolerances outside [0, 1], `range_mostly` outside (0, 1], `min_count` < 1 or schema columns `real` lacks.
    """
    for label, value in (("null_tolerance", null_tolerance), ("share_tolerance", share_tolerance)):
        if not 0 <= value <= 1:
            raise ValueError(f"{label} must lie in [0, 1], got {value!r}")
    if not 0 < range_mostly <= 1:
        raise ValueError(f"range_mostly must lie in (0, 1], got {range_mostly!r}")
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count!r}")
    gx = _gx()
    real = _string_columns(real)
    missing = [name for name in schema.names if name not in real.columns]
    if missing:
        raise ValueError(
            f"the real table lacks schema column(s) {missing}; build the suite from the table the schema describes"
        )
    E = gx.expectations
    notes: list[str] = []
    expectations = [
        E.ExpectTableColumnsToMatchSet(column_set=list(schema.names), exact_match=True, meta={"rule": "table"})
    ]
    for spec in schema.columns:
        expectations += column_rules(E, spec, real[spec.name], notes, null_tolerance=null_tolerance,
                                     range_mostly=range_mostly, min_count=min_count, share_tolerance=share_tolerance)
    return gx.ExpectationSuite(
        name=SUITE_NAME,
        expectations=expectations,
        meta={
            "source": "tabtwin: learned from the real table",
            "null_tolerance": null_tolerance,
            "range_mostly": range_mostly,
            "min_count": min_count,
            "share_tolerance": share_tolerance,
        },
        notes=notes or None,
    )


def check_contracts(synthetic: pd.DataFrame, suite, *, shown=None) -> dict:
    """Validate `synthetic` against `suite` (an ExpectationSuite or its JSON dict) in one run on one batch.

    `shown(column, value) -> bool` vets the synthetic values a failure quotes (`disclosure.Shown`; None quotes
    any: the caller holds both tables)."""
    gx = _gx()
    if isinstance(suite, dict):
        suite = gx.ExpectationSuite(**suite)
    frame = _string_columns(synthetic)
    with _quiet():
        context = _ephemeral_context(gx)
        source = context.data_sources.add_pandas(f"tabtwin_{uuid.uuid4().hex}")
        definition = source.add_dataframe_asset("synthetic").add_batch_definition_whole_dataframe("whole")
        batch = definition.get_batch(batch_parameters={"dataframe": frame})
        result_format = {"result_format": "BASIC", "partial_unexpected_count": MAX_EXAMPLES}
        result = batch.validate(suite, result_format=result_format)
    # GX returns results grouped by how it computed them; report them in suite order
    order = {result_key(exp.configuration): i for i, exp in enumerate(suite.expectations)}
    results = sorted(result.results, key=lambda r: order.get(result_key(r.expectation_config), len(order)))
    failed = [failure(r, frame, shown) for r in results if not r.success]
    by_rule: dict[str, dict[str, int]] = {}
    for r in results:
        rule = str((r.expectation_config.meta or {}).get("rule", "other"))
        counts = by_rule.setdefault(rule, {"passed": 0, "total": 0})
        counts["total"] += 1
        counts["passed"] += int(bool(r.success))
    total = len(results)
    return {
        "success_rate": (total - len(failed)) / total if total else 1.0,
        "n_expectations": total,
        "n_failed": len(failed),
        "failed": failed,
        "by_rule": by_rule,
        "suite": jsonable(suite.to_json_dict()),
        "great_expectations_version": gx.__version__,
    }


def contracts_report(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, null_tolerance: float = 0.05, *,
    range_mostly: float = 1.0, min_count: int = MIN_COUNT, shown: Shown | None = None,
) -> dict:
    """Learn the contracts from `real` and check `synthetic` against them; JSON-able (suite under "suite").
    Failures quote only synthetic values that `min_count` real rows hold (or that lie outside the real range);
    `shown`: a `Shown` of `real` to reuse (its counts are shared with `disclosure_summary`)."""
    suite = build_suite(real, schema, null_tolerance, range_mostly=range_mostly, min_count=min_count)
    shown = Shown(_string_columns(real), min_count) if shown is None else shown
    report = check_contracts(synthetic, suite, shown=shown)
    report.update(null_tolerance=null_tolerance, range_mostly=range_mostly, min_count=min_count)
    return report


# ---------------------------------------------------------------------------------------------- GX plumbing


def _gx():
    """Import GX with analytics off (GX reads the variable when it starts)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    with warnings.catch_warnings():  # its own imports of deprecated stdlib modules are not our noise
        warnings.simplefilter("ignore", DeprecationWarning)
        import great_expectations as gx

    return gx


def _ephemeral_context(gx):
    """An in-memory context: no files, no cloud, no analytics, no progress bars."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


@contextmanager
def _quiet():
    """GX logs and warns freely while it computes metrics; failures come back in the results instead."""
    logger = logging.getLogger("great_expectations")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _string_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """GX addresses columns by string name; the schema names them with str() too."""
    if all(isinstance(c, str) for c in frame.columns):
        return frame
    return frame.rename(columns=str)
