"""Boolean columns: at most two values, True and False, and nulls.

Their own declared type (the schema refuses more than two values), with the statistics of a discrete column
(`pipeline.columns.categorical`): the two values' counts and the null count. Encoded as categories.
"""

from __future__ import annotations

from tabtwin.pipeline.columns.categorical import CategoricalStatistics


class BooleanStatistics(CategoricalStatistics):
    """Accumulator of a boolean column: counts of True, False and nulls."""
