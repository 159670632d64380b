"""Column types, one module each: what is measured about a column of that type, chunk by chunk.

- `categorical`: discrete values and their counts;
- `boolean`: True / False and their counts (the categorical statistics, its own declared type);
- `numeric`: continuous numbers: exact (value, count) arrays up to a cap, then a uniform sample; nulls,
  +-inf, extremes, the first values (decimals) and a uniform sample (the mixture of `TableEncoder`);
- `datetime`: datetimes and durations, as counts of the coarsest unit dividing every value;
- `identifier`: ids, regenerated on decode (numbered past the real ones), and personal data, faked
  (`personal`: detection, locale and formats, Faker).

Each type's accumulator has `update(series, row_offset)`, `merge(other)` and `finalise()` (`columns.base`);
`pipeline.statistics.TableStatistics` runs them over a table's chunks, and both encoders are built from the
finalised summaries. `statistics_for(spec, options)` picks a column's type.
"""

from __future__ import annotations

from tabtwin.pipeline.columns.base import ColumnStatistics, StatisticsOptions
from tabtwin.pipeline.columns.boolean import BooleanStatistics
from tabtwin.pipeline.columns.categorical import CategoricalStatistics
from tabtwin.pipeline.columns.datetime import DatetimeStatistics, is_counted
from tabtwin.pipeline.columns.identifier import IdentifierStatistics
from tabtwin.pipeline.columns.numeric import NumericStatistics

TYPES = {
    "discrete": CategoricalStatistics,
    "boolean": BooleanStatistics,
    "continuous": NumericStatistics,
    "datetime": DatetimeStatistics,
    "id": IdentifierStatistics,
}


def statistics_for(spec, options: StatisticsOptions) -> ColumnStatistics:
    """A new accumulator for the `spec` schema column; durations (timedelta64) count units like datetimes."""
    kind = TYPES[spec.kind]
    if kind is NumericStatistics and is_counted(spec):
        kind = DatetimeStatistics
    return kind(spec, options)
