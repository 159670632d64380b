"""JSON cleaning: any result, config or suite as plain JSON types, the one way every writer in tabtwin does it.

- dict keys become strings; lists, tuples and sets become lists (a set sorted when it can be, for stable files);
- numpy scalars become Python ones and numpy arrays lists;
- NaN and +-inf become None (JSON has neither; `json.dumps` would write the invalid tokens NaN / Infinity);
- pandas Timestamps, datetimes and dates become ISO 8601 text; nulls (None, NaN, NaT, pd.NA) become None;
- objects with `to_json_dict()` (great-expectations) are cleaned through it; anything else becomes str(value).
"""

from __future__ import annotations

import datetime as _dt
import math

import numpy as np
import pandas as pd


def jsonable(value):
    """`value` as plain JSON types (see the module docstring)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [jsonable(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, (pd.Timestamp, _dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if hasattr(value, "to_json_dict"):
        return jsonable(value.to_json_dict())
    return str(value)
